package kubehost

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/pki"
)

// newPKI makes the cluster's CA (pki.CA, files in dir) and the
// service-account signing key: the apiserver verifies tokens with sa.pub,
// the controller-manager signs with sa.key. Every client certificate the
// cluster issues is in group system:masters: the cluster lives for one
// test run on one host, and a per-component RBAC setup would test
// Kubernetes's bootstrap, not the chart.
func newPKI(dir string) (*pki.CA, error) {
	ca, err := pki.NewCA(dir, "etcd-chaos kube-host CA", 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := pki.WritePEM(ca.Path("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	return ca, pki.WritePEM(ca.Path("sa.pub"), "PUBLIC KEY", pub)
}

// writeKubeconfig writes <name>.kubeconfig in the CA's dir for the client
// certificate name.
func writeKubeconfig(ca *pki.CA, name, server string) (string, error) {
	path := ca.Path(name + ".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-host
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: kube-host
  context:
    cluster: kube-host
    user: %s
current-context: kube-host
`, server, ca.Path("ca.crt"), name, ca.Path(name+".crt"), ca.Path(name+".key"), name)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
