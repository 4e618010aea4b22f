package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DiscoverPods lists the release's etcd pods by the chart's selector labels
// (name=etcd, instance=<release>, component=etcd), ordered by StatefulSet
// ordinal, so that <fullname>-10 comes after <fullname>-9.
func DiscoverPods(ctx context.Context, cs kubernetes.Interface, namespace, release string) ([]corev1.Pod, error) {
	sel := chart.Selector(release)
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list pods %q in namespace %s: %w", sel, namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no etcd pod matches %q in namespace %s: is release %q installed there (helm -n %s list)?", sel, namespace, release, namespace)
	}
	pods := list.Items
	sort.Slice(pods, func(i, j int) bool {
		oi, oj := ordinal(pods[i].Name), ordinal(pods[j].Name)
		if oi != oj {
			return oi < oj
		}
		return pods[i].Name < pods[j].Name
	})
	return pods, nil
}

// ordinal is the StatefulSet ordinal at the end of a pod name, or -1.
func ordinal(name string) int {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func etcdContainer(p *corev1.Pod) (*corev1.Container, error) {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == "etcd" {
			return &p.Spec.Containers[i], nil
		}
	}
	return nil, fmt.Errorf("pod %s has no container named etcd: is it a Bitnami etcd chart pod?", p.Name)
}

func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// clientTLS decides how the harness speaks TLS to the pods, from the etcd
// container's environment as the chart renders it. It returns nil for
// plaintext.
//
// Port-forwards reach every member at 127.0.0.1, a name no member
// certificate carries, so host names are never verified. With a CA from
// auth.client.existingSecret the chain is verified against it; with
// auth-TLS (useAutoTLS) the certificates are self-signed inside each pod
// and stored nowhere, so nothing can be verified and the connection is
// encrypted only.
func clientTLS(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (*tls.Config, string, error) {
	c, err := etcdContainer(p)
	if err != nil {
		return nil, "", err
	}
	urls := envValue(c, "ETCD_ADVERTISE_CLIENT_URLS") + envValue(c, "ETCD_LISTEN_CLIENT_URLS")
	if !strings.Contains(urls, "https://") {
		return nil, "", nil
	}
	if envValue(c, "ETCD_AUTO_TLS") == "true" {
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
			"client auto-TLS: certificates are self-signed in each pod and stored nowhere, so they are not verified", nil
	}
	secret := ""
	for _, v := range p.Spec.Volumes {
		if v.Name == "etcd-client-certs" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret == "" {
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
			"client TLS without a certificate Secret mounted as etcd-client-certs: not verified", nil
	}
	sec, err := cs.CoreV1().Secrets(p.Namespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("read client TLS secret %s/%s: %w", p.Namespace, secret, err)
	}
	key := func(env, def string) []byte {
		name := def
		if f := envValue(c, env); f != "" {
			name = path.Base(f)
		}
		return sec.Data[name]
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	if cert, key := key("ETCD_CERT_FILE", "cert.pem"), key("ETCD_KEY_FILE", "key.pem"); len(cert) > 0 && len(key) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, "", fmt.Errorf("client certificate in secret %s/%s: %w", p.Namespace, secret, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	ca := key("ETCD_TRUSTED_CA_FILE", "ca.crt")
	if len(ca) == 0 {
		return cfg, "client TLS secret " + secret + " has no CA: server certificates not verified", nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, "", fmt.Errorf("CA in secret %s/%s is not PEM", p.Namespace, secret)
	}
	cfg.VerifyPeerCertificate = verifyChainOnly(pool)
	return cfg, "server certificates verified against the chart CA, host names not (port-forwards use 127.0.0.1)", nil
}

// verifyChainOnly verifies the server's chain against roots, ignoring the
// host name (see clientTLS).
func verifyChainOnly(roots *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("server sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// imageVersion guesses the etcd version from the image tag
// ("3.6.4-debian-12-r3" -> "3.6.4"), used until a member answers Status.
func imageVersion(p *corev1.Pod) string {
	c, err := etcdContainer(p)
	if err != nil {
		return ""
	}
	img := c.Image
	if i := strings.IndexByte(img, '@'); i >= 0 {
		img = img[:i]
	}
	i := strings.LastIndexByte(img, ':')
	if i < 0 || strings.Contains(img[i:], "/") {
		return ""
	}
	tag := img[i+1:]
	if j := strings.IndexByte(tag, '-'); j >= 0 {
		tag = tag[:j]
	}
	return strings.TrimPrefix(tag, "v")
}
