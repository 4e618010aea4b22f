package kubehost

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/etcd-chaos/etcd-chaos/pkg/image"
)

// The cluster's fixed addresses. Only one kube-host cluster runs on a host
// at a time (see hostLock), so fixed names make leftovers easy to find.
const (
	// Bridge is the CNI bridge. It is created before the first pod, with
	// the gateway address, so that CoreDNS and the apiserver can bind to
	// it: pods reach the host there.
	Bridge    = "ecbr0"
	podSubnet = "10.244.0.0/24"
	// HostIP is the bridge's address: the node IP, the apiserver's, and
	// the cluster DNS server's.
	HostIP         = "10.244.0.1"
	serviceSubnet  = "10.96.0.0/24"
	kubernetesSvc  = "10.96.0.1"
	apiserverPort  = 6443
	kubeletPort    = 10250
	clusterDomain  = "cluster.local"
	cgroupRootName = "etcd-chaos-kube-host"
	// NodeName is the one node's name.
	NodeName = "kube-host"
)

// writeContainerdConfig sets restrict_oom_score_adj because a pod sandbox
// asks for oom_score_adj -998 (and the kubelet asks for negative values for
// Guaranteed pods), and lowering oom_score_adj below the parent's needs
// CAP_SYS_RESOURCE: where root lacks it (sandboxed VMs such as the
// project's machines), runc's init fails to write it and dies, seen only as
// "can't get final child's PID from pipe: EOF". The option clamps every
// container's value to no less than containerd's own, which needs no
// capability; OOM ordering between pods is all this harness loses.
func (c *Cluster) writeContainerdConfig() (string, error) {
	d := c.dir
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "containerd", "root"), filepath.Join(d, "containerd", "state"), c.sock, c.sock+".ttrpc",
		filepath.Join(d, "containerd", "opt"), image.PauseRef, c.cniBinDir, filepath.Join(d, "cni", "net.d"))
	path := filepath.Join(d, "containerd.toml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// writeCNIConfig: one bridge with host-local addresses; no masquerade and
// no portmap (nothing leaves the host, nothing uses hostPort), so CNI adds
// no iptables rules of its own.
func (c *Cluster) writeCNIConfig() error {
	dir := filepath.Join(c.dir, "cni", "net.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "etcd-chaos",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, Bridge, filepath.Join(c.dir, "cni", "ipam"), podSubnet, HostIP)
	return os.WriteFile(filepath.Join(dir, "10-etcd-chaos.conflist"), []byte(cfg), 0o644)
}

func (c *Cluster) writeKubeletConfig() (string, error) {
	resolv := filepath.Join(c.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+HostIP+"\n"), 0o644); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
tlsCertFile: %s
tlsPrivateKeyFile: %s
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
clusterDNS: [%s]
clusterDomain: %s
resolvConf: %s
podLogsDirectory: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
registerNode: true
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
rotateCertificates: false
serverTLSBootstrap: false
maxPods: 60
`, HostIP, kubeletPort, c.pki.Path("ca.crt"), c.pki.Path("kubelet.crt"), c.pki.Path("kubelet.key"),
		c.sock, cgroupRootName, HostIP, clusterDomain, resolv, filepath.Join(c.dir, "pod-logs"))
	cfg += crashLoopBackOff(c.version)
	path := filepath.Join(c.dir, "kubelet.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// restartCap is the longest the kubelet waits before restarting a crashed
// container. Kubernetes doubles the wait from 10 s after each crash up to
// 5 minutes, so a kill nemesis that hits the same member (the leader, say)
// a few times would leave it down for most of a short run and its heal
// waiting minutes. Capping it at the first step keeps every kill's
// recovery what a single kill gets on any cluster. Kubernetes before 1.32
// has no such setting and keeps its default.
const restartCap = "10s"

// crashLoopBackOff is the kubelet configuration that caps the restart
// back-off at restartCap, or "" on versions without the setting.
func crashLoopBackOff(version string) string {
	v := "v" + strings.TrimPrefix(version, "v")
	// An unparseable version gets nothing: an unknown kubelet may refuse the
	// feature gate, and then the node never starts.
	if !semver.IsValid(v) || semver.Major(v) != "v1" || semver.Compare(v, "v1.32") < 0 {
		return ""
	}
	return "featureGates:\n  KubeletCrashLoopBackOffMax: true\ncrashLoopBackOff:\n  maxContainerRestartPeriod: " + restartCap + "\n"
}

func (c *Cluster) writeKubeProxyConfig(kubeconfig string) (string, error) {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, NodeName, podSubnet)
	path := filepath.Join(c.dir, "kube-proxy.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// writeCorefile: CoreDNS answers the cluster domain from the apiserver on
// the bridge address, the kubelet's clusterDNS. Nothing in the cluster
// resolves outside names, so there is no forwarder.
func (c *Cluster) writeCorefile(kubeconfig string) (string, error) {
	cfg := fmt.Sprintf(`.:53 {
    bind %s
    errors
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s kube-host
        pods insecure
        ttl 5
    }
}
`, HostIP, clusterDomain, kubeconfig)
	path := filepath.Join(c.dir, "Corefile")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
