// Package pki makes the throwaway certificates a test cluster needs: one
// CA per run and certificates it signs, written as PEM files into one
// directory. The local backend uses it for peer TLS, the kube-host backend
// for the Kubernetes control plane. Keys are ECDSA P-256; nothing here is
// meant to outlive the run that made it.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority whose files live in Dir: ca.crt, and
// <name>.crt and <name>.key for every certificate it issued.
type CA struct {
	Dir  string
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// notAfter is when the CA and everything it issues expire.
	notAfter time.Time
}

// NewCA creates dir (0700) and a CA named cn, valid from an hour ago (clock
// skew between processes) for validity, and writes Dir/ca.crt.
func NewCA(dir, cn string, validity time.Duration) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create certificate dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir, Cert: cert, key: key, notAfter: tmpl.NotAfter}
	return ca, WritePEM(ca.Path("ca.crt"), "CERTIFICATE", der)
}

// Path is the path of a file in the CA's directory.
func (ca *CA) Path(name string) string { return filepath.Join(ca.Dir, name) }

// Issue writes <name>.crt and <name>.key, a certificate for cn in groups
// orgs. Every certificate is good for client authentication; one with
// hosts (IP addresses and DNS names) is a server certificate for them too.
func (ca *CA) Issue(name, cn string, orgs, hosts []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    ca.Cert.NotBefore,
		NotAfter:     ca.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("sign certificate %s: %w", name, err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := WritePEM(ca.Path(name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	return WritePEM(ca.Path(name+".key"), "EC PRIVATE KEY", kb)
}

// WritePEM writes one PEM block, readable by the owner only.
func WritePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
