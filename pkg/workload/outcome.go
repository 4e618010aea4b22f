package workload

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Classify turns the error of a client request into the outcome the checkers
// rely on.
//
// Getting this wrong in one direction hides bugs (a write recorded as failed
// that did apply looks like a phantom write); in the other it only costs
// checker time (an unknown write is allowed to apply or not). So Fail is
// reserved for errors where etcd proves it rejected the request before or
// instead of applying it; everything else, including errors this function has
// never seen, is Unknown.
func Classify(err error) history.Outcome {
	if err == nil {
		return history.OK
	}
	// The client gave up waiting; the request may be in the leader's log.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return history.Unknown
	}
	code, ok := errorCode(err)
	if !ok {
		// Connection resets, EOFs, "transport is closing", dial errors:
		// we cannot tell how far the request got.
		return history.Unknown
	}
	switch code {
	case codes.InvalidArgument, // empty key, too many ops, request too large, auth failed
		codes.NotFound,           // lease not found
		codes.OutOfRange,         // compacted, future revision, lease TTL too large
		codes.AlreadyExists,      // nothing to apply twice
		codes.PermissionDenied,   // auth checks run in apply and reject the whole request
		codes.Unauthenticated,    // invalid token: rejected before proposal
		codes.FailedPrecondition, // not capable, learner, lease exists: rejected before proposal
		codes.ResourceExhausted,  // no space alarm, too many requests: rejected
		codes.Unimplemented:
		return history.Fail
	}
	// Unavailable (no leader, leader changed, request timed out, server
	// stopped), DeadlineExceeded, Canceled, Internal, Unknown, Aborted,
	// DataLoss: the proposal may have been committed.
	return history.Unknown
}

// errorCode finds the gRPC code in err, whether clientv3 converted it to an
// rpctypes.EtcdError or left it a gRPC status.
func errorCode(err error) (codes.Code, bool) {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code(), true
	}
	if s, ok := status.FromError(err); ok {
		return s.Code(), true
	}
	return codes.OK, false
}
