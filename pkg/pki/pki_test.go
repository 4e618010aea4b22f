package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

func TestIssuedCertificatesVerifyAgainstTheirCAOnly(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA(dir, "test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue("server", "srv", nil, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue("client", "someone", []string{"system:masters"}, nil); err != nil {
		t.Fatal(err)
	}
	other, err := NewCA(t.TempDir(), "other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	load := func(name string) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(ca.Path(name+".crt"), ca.Path(name+".key"))
		if err != nil {
			t.Fatalf("%s: certificate and key do not match: %v", name, err)
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv, cli := load("server"), load("client")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)

	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate for localhost: %v", err)
	}
	if err := srv.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("server certificate must carry 127.0.0.1 as an IP: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a server certificate also authenticates its holder as a client: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
		t.Error("a certificate verified against a CA that did not sign it")
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
		t.Error("server certificate verified for a host it does not name")
	}

	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate (no hosts) must not serve")
	}
	if cli.Subject.CommonName != "someone" || len(cli.Subject.Organization) != 1 || cli.Subject.Organization[0] != "system:masters" {
		t.Errorf("client subject = %v, want CN someone, O system:masters", cli.Subject)
	}
	if len(srv.IPAddresses) != 1 || !srv.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || len(srv.DNSNames) != 1 {
		t.Errorf("server SANs = %v %v, want 127.0.0.1 and localhost", srv.IPAddresses, srv.DNSNames)
	}

	for _, f := range []string{"ca.crt", "server.key", "client.key"} {
		st, err := os.Stat(ca.Path(f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}
