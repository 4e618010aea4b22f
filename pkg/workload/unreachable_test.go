package workload

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// deadCluster names one endpoint where nothing listens.
type deadCluster struct {
	cluster.Cluster // other methods are never called
	url             string
}

func newDeadCluster(t *testing.T) *deadCluster {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	return &deadCluster{url: url}
}

func (d *deadCluster) Members() []cluster.Member {
	return []cluster.Member{{Name: "member-0", ClientURL: d.url}}
}
func (d *deadCluster) Endpoints() []string { return []string{d.url} }
func (d *deadCluster) Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: d.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
}

// TestUnreachableClusterIsAnError: with no member answering, the workload
// says so instead of recording a run of unknown operations.
func TestUnreachableClusterIsAnError(t *testing.T) {
	c := newDeadCluster(t)
	rec := history.NewRecorder(history.Meta{})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, c, rec, Config{}); err == nil || !strings.Contains(err.Error(), "is the cluster up") {
		t.Errorf("Run on a dead cluster: err = %v, want one saying no member answers", err)
	}
	if _, err := StartWatch(ctx, c, rec, WatchConfig{}); err == nil {
		t.Error("StartWatch on a dead cluster succeeded")
	}
	if n := len(rec.History().Operations); n != 0 {
		t.Errorf("%d operations recorded against a dead cluster", n)
	}
}

// TestBadInputIsAnError: config and argument errors come back before the
// cluster is touched.
func TestBadInputIsAnError(t *testing.T) {
	ctx := context.Background()
	rec := history.NewRecorder(history.Meta{})
	var c cluster.Cluster // nil: must not be used
	if _, err := Run(ctx, c, rec, Config{Clients: -1}); err == nil {
		t.Error("Run accepted a negative client count")
	}
	if _, err := Run(ctx, c, nil, Config{}); err == nil || !strings.Contains(err.Error(), "Recorder") {
		t.Errorf("Run without a recorder: err = %v", err)
	}
	if _, err := StartWatch(ctx, c, rec, WatchConfig{Watchers: 1, Pinned: 2}); err == nil {
		t.Error("StartWatch accepted Pinned > Watchers")
	}
	if _, err := RunLeases(ctx, c, rec, LeaseConfig{ExpireTTL: -1}); err == nil {
		t.Error("RunLeases accepted a negative TTL")
	}
	if _, err := RunLockCounter(ctx, c, rec, LockConfig{SessionTTL: -1}); err == nil {
		t.Error("RunLockCounter accepted a negative session TTL")
	}
	if _, err := RunRegistration(ctx, c, rec, RegConfig{TTL: -1}); err == nil {
		t.Error("RunRegistration accepted a negative TTL")
	}
	if err := FinalRead(ctx, c, rec, ""); err == nil {
		t.Error("FinalRead accepted an empty prefix")
	}
}

// restartingCluster refuses the first opens as Unavailable, as a member
// does while it restarts under an authenticating client, then opens.
type restartingCluster struct {
	*deadCluster
	refusals int
	calls    int
	code     codes.Code
}

func (r *restartingCluster) Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	r.calls++
	if r.calls <= r.refusals {
		return nil, status.Error(r.code, `closing transport due to: connection error: desc = "error reading from server: EOF", received prior goaway: code: NO_ERROR, debug data: "graceful_stop"`)
	}
	return r.deadCluster.Client(ctx, endpoints...)
}

// TestOpenClientRidesOutARestart: a client open refused as Unavailable
// (the member restarting) is retried; any other refusal is an error at once.
func TestOpenClientRidesOutARestart(t *testing.T) {
	r := &restartingCluster{deadCluster: newDeadCluster(t), refusals: 3, code: codes.Unavailable}
	cli, err := openClient(context.Background(), r, "")
	if err != nil {
		t.Fatalf("open after %d Unavailable refusals: %v", r.refusals, err)
	}
	cli.Close()
	if r.calls != 4 {
		t.Errorf("opened after %d calls, want 4", r.calls)
	}

	other := &restartingCluster{deadCluster: newDeadCluster(t), refusals: 3, code: codes.Unauthenticated}
	if _, err := openClient(context.Background(), other, ""); err == nil || other.calls != 1 {
		t.Errorf("a refusal other than Unavailable: err = %v after %d calls, want an error after 1", err, other.calls)
	}
}
