package local

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/pki"
)

// peerTLS is the certificate material of a cluster with peer TLS: one CA,
// and one certificate for 127.0.0.1 that serves as server and client
// certificate for every member and every peer proxy (all of them live on
// 127.0.0.1, so per-member certificates would prove nothing more).
type peerTLS struct {
	caFile, certFile, keyFile string
	server, client            *tls.Config
}

// newPeerTLS generates the CA and certificate into dir, valid for a day.
func newPeerTLS(dir string) (*peerTLS, error) {
	ca, err := pki.NewCA(dir, "etcd-chaos peer CA", 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	if err := ca.Issue("peer", "etcd-chaos peer", nil, []string{"127.0.0.1", "localhost"}); err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	p := &peerTLS{caFile: ca.Path("ca.crt"), certFile: ca.Path("peer.crt"), keyFile: ca.Path("peer.key")}
	pair, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the generated peer certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	p.server = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	p.client = &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS12,
	}
	return p, nil
}

// args are the member flags that turn peer TLS on.
func (p *peerTLS) args() []string {
	return []string{
		"--peer-cert-file", p.certFile,
		"--peer-key-file", p.keyFile,
		"--peer-trusted-ca-file", p.caFile,
		"--peer-client-cert-auth",
	}
}
