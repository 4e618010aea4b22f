package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want history.Outcome
	}{
		{"nil", nil, history.OK},

		// The request may have reached the leader: unknown.
		{"context deadline", context.DeadlineExceeded, history.Unknown},
		{"context canceled", context.Canceled, history.Unknown},
		{"wrapped deadline", fmt.Errorf("put: %w", context.DeadlineExceeded), history.Unknown},
		{"client-side leader changed", rpctypes.ErrLeaderChanged, history.Unknown},
		{"client-side no leader", rpctypes.ErrNoLeader, history.Unknown},
		{"client-side timeout", rpctypes.ErrTimeout, history.Unknown},
		{"timeout due to leader fail", rpctypes.ErrTimeoutDueToLeaderFail, history.Unknown},
		{"timeout due to connection lost", rpctypes.ErrTimeoutDueToConnectionLost, history.Unknown},
		{"timeout wait applied index", rpctypes.ErrTimeoutWaitAppliedIndex, history.Unknown},
		{"server stopped", rpctypes.ErrStopped, history.Unknown},
		{"grpc leader changed", rpctypes.ErrGRPCLeaderChanged, history.Unknown},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing\""), history.Unknown},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), history.Unknown},
		{"grpc canceled", status.Error(codes.Canceled, "grpc: the client connection is closing"), history.Unknown},
		{"server request canceled", rpctypes.ErrGRPCCanceled, history.Unknown},
		{"grpc internal", status.Error(codes.Internal, "stream terminated by RST_STREAM"), history.Unknown},
		{"grpc unknown", status.Error(codes.Unknown, "something"), history.Unknown},
		{"connection reset", &netErr{syscall.ECONNRESET}, history.Unknown},
		{"eof", io.ErrUnexpectedEOF, history.Unknown},
		{"no endpoints", clientv3.ErrNoAvailableEndpoints, history.Unknown},
		{"plain error", errors.New("anything never seen before"), history.Unknown},
		{"corrupt", rpctypes.ErrCorrupt, history.Unknown},

		// etcd proves it did not apply: fail.
		{"lease not found", rpctypes.ErrLeaseNotFound, history.Fail},
		{"grpc lease not found", rpctypes.ErrGRPCLeaseNotFound, history.Fail},
		{"wrapped lease not found", fmt.Errorf("keepalive: %w", rpctypes.ErrLeaseNotFound), history.Fail},
		{"compacted", rpctypes.ErrCompacted, history.Fail},
		{"future rev", rpctypes.ErrFutureRev, history.Fail},
		{"too many ops", rpctypes.ErrTooManyOps, history.Fail},
		{"duplicate key", rpctypes.ErrDuplicateKey, history.Fail},
		{"empty key", rpctypes.ErrEmptyKey, history.Fail},
		{"request too large", rpctypes.ErrRequestTooLarge, history.Fail},
		{"permission denied", rpctypes.ErrPermissionDenied, history.Fail},
		{"auth failed", rpctypes.ErrAuthFailed, history.Fail},
		{"invalid auth token", rpctypes.ErrInvalidAuthToken, history.Fail},
		{"no space", rpctypes.ErrNoSpace, history.Fail},
		{"too many requests", rpctypes.ErrTooManyRequests, history.Fail},
		{"lease TTL too large", rpctypes.ErrLeaseTTLTooLarge, history.Fail},
		{"not capable", rpctypes.ErrNotCapable, history.Fail},
		{"grpc invalid argument", status.Error(codes.InvalidArgument, "bad"), history.Fail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%T %v) = %s, want %s", tc.err, tc.err, got, tc.want)
			}
		})
	}
}

// TestClassifyThroughContextError runs errors through the conversion clientv3
// applies to every response error, so the classifier sees what callers see.
func TestClassifyThroughContextError(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want history.Outcome
	}{
		{live, rpctypes.ErrGRPCLeaseNotFound, history.Fail},
		{live, rpctypes.ErrGRPCNoLeader, history.Unknown},
		{live, rpctypes.ErrGRPCCompacted, history.Fail},
		{done, status.Error(codes.Canceled, "context canceled"), history.Unknown},
		{live, status.Error(codes.Unavailable, "transport is closing"), history.Unknown},
	} {
		err := clientv3.ContextError(tc.ctx, tc.err)
		if got := Classify(err); got != tc.want {
			t.Errorf("Classify(ContextError(%v)) = %s (converted to %T %v), want %s", tc.err, got, err, err, tc.want)
		}
	}
}

type netErr struct{ errno syscall.Errno }

func (e *netErr) Error() string { return "read tcp 127.0.0.1:1->127.0.0.1:2: " + e.errno.Error() }
func (e *netErr) Unwrap() error { return e.errno }
