package local

import (
	"crypto/tls"
	"io"
	"testing"
)

// The peer certificate serves and authenticates as a client at once: a
// mutual-TLS handshake between the server and client configs succeeds, and
// a client without a certificate is refused.
func TestPeerTLSHandshakes(t *testing.T) {
	p, err := newPeerTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", p.server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}
	if err := dial(p.client); err != nil {
		t.Fatalf("mutual TLS with the peer certificate: %v", err)
	}
	noCert := p.client.Clone()
	noCert.Certificates = nil
	if err := dial(noCert); err == nil {
		t.Error("a client without a certificate was accepted")
	}
}
