// Package verdict holds the result of one check, the common currency between
// the checkers, the suites, the CLI and the report.
package verdict

import (
	"fmt"
	"time"
)

// Status is the outcome of a check.
type Status string

const (
	// Pass: the property holds on the whole history.
	Pass Status = "pass"
	// Fail: the property is violated; Violations say where.
	Fail Status = "fail"
	// Unknown: the check could not decide, for example porcupine timed out.
	// Unknown is never a pass.
	Unknown Status = "unknown"
	// Skipped: the history holds nothing this check applies to.
	Skipped Status = "skipped"
)

// MaxViolations bounds how many violations a check keeps, so that one broken
// run does not produce a report nobody can open.
const MaxViolations = 50

// Check is the result of one named check, such as "linearizable" or
// "watch/ordered".
type Check struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Summary string `json:"summary"`
	// Violations are specific findings, each one line a person can act on.
	Violations []string `json:"violations,omitempty"`
	// Omitted counts violations beyond MaxViolations that were not kept.
	Omitted int `json:"omitted,omitempty"`
	// Warnings do not fail the check but are worth reading.
	Warnings []string `json:"warnings,omitempty"`
	// Artifacts maps a label to a file name in the artifact dir, such as
	// "visualization": "linearizability.html".
	Artifacts map[string]string `json:"artifacts,omitempty"`
	Duration  time.Duration     `json:"duration_ns"`
}

// Violate records a violation, keeping at most MaxViolations, and marks the
// check failed.
func (c *Check) Violate(format string, args ...any) {
	c.Status = Fail
	if len(c.Violations) >= MaxViolations {
		c.Omitted++
		return
	}
	c.Violations = append(c.Violations, fmt.Sprintf(format, args...))
}

// Warn records a warning.
func (c *Check) Warn(format string, args ...any) {
	if len(c.Warnings) >= MaxViolations {
		return
	}
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...))
}

// Overall folds checks into the run's one verdict: Fail if any check
// failed, else Unknown if any could not decide, else Pass (skipped checks
// count as passed). Unknown is never a pass.
func Overall(checks []Check) Status {
	v := Pass
	for _, c := range checks {
		switch c.Status {
		case Pass, Skipped:
		case Fail:
			return Fail
		default:
			v = Unknown
		}
	}
	return v
}

// Passed reports whether the overall verdict is Pass: every check passed or
// was skipped.
func Passed(checks []Check) bool { return Overall(checks) == Pass }

// Failed returns the checks that did not pass or skip.
func Failed(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if c.Status != Pass && c.Status != Skipped {
			out = append(out, c)
		}
	}
	return out
}
