// Package cluster defines what the harness needs from an etcd cluster, so
// that workloads, nemeses and checkers run unchanged against the embedded
// local backend (pkg/cluster/local) and the Kubernetes backends
// (pkg/cluster/kube, pkg/cluster/kind).
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClientConfig is the one client configuration every backend's Client uses,
// so that a fault is detected as quickly on Kubernetes as locally and a
// history never differs between backends because of client settings.
// Dialling does not block; keepalives make a dead or partitioned connection
// fail within seconds rather than hang. gRPC raises a keepalive time below
// 10s to 10s, and etcd's server rejects pings more often than every 5s; the
// 5s timeout leaves room for a port-forward's extra hop.
func ClientConfig(endpoints []string, creds Credentials) clientv3.Config {
	return clientv3.Config{
		Endpoints:            endpoints,
		Username:             creds.Username,
		Password:             creds.Password,
		TLS:                  creds.TLS,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
	}
}

// ErrUnsupported is returned by a fault primitive a backend cannot inject.
var ErrUnsupported = errors.New("fault not supported by this backend")

// Member is one etcd member as the harness reaches it.
type Member struct {
	// Name is stable for the life of the cluster: "member-0" locally, the
	// pod name on Kubernetes.
	Name string
	// ClientURL is the URL the harness dials for this member: a fault proxy
	// locally, a port-forward on Kubernetes.
	ClientURL string
}

// Credentials are what a client needs to be admitted.
type Credentials struct {
	Username string
	Password string
	// TLS is nil for plaintext clients.
	TLS *tls.Config
}

// Cluster is a running etcd cluster.
type Cluster interface {
	// Backend names the implementation: "local", "kube" or "kind".
	Backend() string
	// Version is the etcd server version the members run.
	Version() string
	// Members lists the members in a stable order.
	Members() []Member
	// Endpoints returns every member's ClientURL.
	Endpoints() []string
	// Credentials returns what clients authenticate with.
	Credentials() Credentials
	// Client opens a client on the given endpoints (all members when none).
	Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error)
	// Leader returns the member that is leader now, as a majority of the
	// reachable members report it.
	Leader(ctx context.Context) (Member, error)
	// WaitHealthy blocks until every member answers and they agree on a
	// leader, or ctx ends.
	WaitHealthy(ctx context.Context) error
	// Faults returns the fault primitives the nemeses use.
	Faults() Faults
	// CollectLogs copies every member's log into dir.
	CollectLogs(ctx context.Context, dir string) error
	// Close stops every member and removes everything the cluster created.
	// It is safe to call more than once.
	Close(ctx context.Context) error
}

// Faults are the primitives that pkg/chaos composes into nemeses. Every
// method takes effect before it returns, including on connections that are
// already open, and returns ErrUnsupported when the backend cannot do it.
type Faults interface {
	// Kill sends SIGKILL to the member's etcd process. The member stays down
	// until Restart, except on Kubernetes, where the kubelet restarts the
	// container by itself and Restart only waits for it.
	Kill(ctx context.Context, member string) error
	// Restart brings a killed member back and waits until it serves.
	Restart(ctx context.Context, member string) error
	// Pause freezes the member's process (SIGSTOP); Resume thaws it.
	Pause(ctx context.Context, member string) error
	Resume(ctx context.Context, member string) error
	// Cut drops all peer traffic between a and b, in both directions.
	Cut(ctx context.Context, a, b string) error
	// Degrade adds latency, and loses the given fraction (0..1) of
	// transmissions, on the member's peer traffic.
	Degrade(ctx context.Context, member string, latency time.Duration, loss float64) error
	// Heal removes every network fault: cuts and degradations.
	Heal(ctx context.Context) error
}

// PodFaults are faults only a Kubernetes backend has.
type PodFaults interface {
	// DeletePod deletes the member's pod with grace period 0 and waits until
	// its replacement serves.
	DeletePod(ctx context.Context, member string) error
	// DeleteAllPods deletes every member's pod at once and waits until the
	// StatefulSet has replaced them.
	DeleteAllPods(ctx context.Context) error
}

// ErrMemberDown is returned by a member-level primitive when the member's
// process is not running (it crashed, or a failpoint panicked it).
var ErrMemberDown = errors.New("member is down")

// MembershipFaults change the cluster's membership.
type MembershipFaults interface {
	// ReplaceMember removes the member, wipes its data and adds it back as
	// a new member (a new ID) under the same name and URLs; it returns once
	// the new member serves.
	ReplaceMember(ctx context.Context, member string) error
}

// FailpointFaults arm gofail failpoints in the members of an etcd built
// with them (etcdbin.EnsureFailpoints).
type FailpointFaults interface {
	// Failpoints lists the failpoints the members' binary has; empty when
	// it is a plain build.
	Failpoints() []string
	// SetFailpoint arms name on member with a gofail term ("panic",
	// "sleep(100)", "off" disarms). It fails with ErrMemberDown when the
	// member is not running.
	SetFailpoint(ctx context.Context, member, name, term string) error
	// FailpointHits is how many times name has fired on member since the
	// member started; ErrMemberDown when the member is not running.
	FailpointHits(ctx context.Context, member, name string) (int, error)
}
