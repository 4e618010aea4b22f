package verdict

import "testing"

func TestViolateCapsAndFails(t *testing.T) {
	c := Check{Name: "x", Status: Pass}
	for i := range MaxViolations + 7 {
		c.Violate("violation %d", i)
	}
	if c.Status != Fail || len(c.Violations) != MaxViolations || c.Omitted != 7 {
		t.Fatalf("status %s, %d kept, %d omitted", c.Status, len(c.Violations), c.Omitted)
	}
}

func TestUnknownIsNeverAPass(t *testing.T) {
	checks := []Check{{Name: "a", Status: Pass}, {Name: "b", Status: Skipped}}
	if !Passed(checks) {
		t.Fatal("pass and skipped must pass")
	}
	checks = append(checks, Check{Name: "c", Status: Unknown})
	if Passed(checks) {
		t.Fatal("an unknown verdict must not pass")
	}
	if f := Failed(checks); len(f) != 1 || f[0].Name != "c" {
		t.Fatalf("Failed = %+v", f)
	}
}

func TestOverall(t *testing.T) {
	c := func(s Status) Check { return Check{Name: string(s), Status: s} }
	for _, tc := range []struct {
		checks []Check
		want   Status
	}{
		{nil, Pass},
		{[]Check{c(Pass), c(Skipped)}, Pass},
		{[]Check{c(Pass), c(Unknown)}, Unknown},
		{[]Check{c(Unknown), c(Fail), c(Pass)}, Fail},
		{[]Check{c("bogus")}, Unknown}, // an unrecognised status is never a pass
	} {
		if got := Overall(tc.checks); got != tc.want {
			t.Errorf("Overall(%v) = %s, want %s", tc.checks, got, tc.want)
		}
		if Passed(tc.checks) != (tc.want == Pass) {
			t.Errorf("Passed(%v) disagrees with Overall", tc.checks)
		}
	}
}
