package workload

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// client is the only place a request becomes a recorded operation: it hands
// out the operation's ID, takes the call time, makes the clientv3 request
// under the request timeout, classifies the error, copies the response and
// records the return. Actors only choose requests.
//
// Many clients may share one clientv3.Client (the two actors of a lease
// client do); each is one sequential actor with its own ClientID.
type client struct {
	cli *clientv3.Client
	rec *history.Recorder
	// id and endpoint are recorded with every operation.
	id       int
	endpoint string
	// timeout bounds one request. A request that times out is recorded
	// unknown.
	timeout time.Duration
	// detach makes requests outlive the caller's ctx: the end of a run
	// must not cancel requests in flight, because a canceled write is
	// recorded unknown and makes the last moments of every history
	// expensive to check for no reason. Clients that make a bounded number
	// of requests after the traffic (final read, registration) leave it off
	// so their caller's deadline holds.
	detach bool
	stats  Stats
	// lastRev is the highest header revision this client was answered
	// with, for traffic that chooses revisions to read at.
	lastRev int64
	// op is the operation do is recording. call gets a pointer to it
	// rather than to a local, which would escape through the func value
	// and cost a heap copy of every operation. One slot serves because a
	// client is one sequential actor, as stats and lastRev assume.
	op history.Operation
}

// do records op around call. op needs its Kind and request fields; do fills
// the ID (unless set), Call, Return, Outcome, Error and Resp. The response
// call returns is kept only for outcome OK, because checkers must not read
// meaning into a response the client did not get. call may relabel op from
// what it learned (see CAS.Guards). New kinds of request are one typed
// method on client that builds op and calls do.
func (c *client) do(ctx context.Context, op history.Operation, call func(context.Context, *history.Operation) (*history.Response, error)) history.Operation {
	if op.ID == 0 {
		op.ID = c.rec.NextID()
	}
	op.ClientID, op.Endpoint = c.id, c.endpoint
	if c.detach {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	c.op = op
	c.op.Call = c.rec.Now()
	resp, err := call(ctx, &c.op)
	cancel()
	c.finish(&c.op, err, resp)
	return c.op
}

// finish records op's return and outcome.
func (c *client) finish(op *history.Operation, err error, resp *history.Response) {
	op.Return = c.rec.Now()
	op.Outcome = Classify(err)
	if err != nil {
		op.Error = err.Error()
		op.Resp = nil
	} else {
		op.Resp = resp
		if resp != nil && !op.Serializable {
			c.lastRev = max(c.lastRev, resp.Revision)
		}
	}
	c.rec.AddOperation(*op)
	c.stats.add(op)
}

// newWrite starts a write whose value is unique to the run: prefix followed
// by a string naming the operation.
func (c *client) newWrite(kind history.Kind, key, prefix string) history.Operation {
	op := history.Operation{ID: c.rec.NextID(), Kind: kind, Key: key}
	op.Value = uniqueValue(prefix, c.rec, c.id, op.ID)
	return op
}

// read records one Get request for op.Key with opts: the one path every
// read (plain, ranged, at a revision) takes.
func (c *client) read(ctx context.Context, op history.Operation, opts ...clientv3.OpOption) history.Operation {
	return c.do(ctx, op, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Get(ctx, op.Key, opts...)
		if err != nil {
			return nil, err
		}
		return rangeResponse(resp), nil
	})
}

// Get reads key, linearizably unless serializable.
func (c *client) Get(ctx context.Context, key string, serializable bool) history.Operation {
	op := history.Operation{Kind: history.Get, Key: key, Serializable: serializable}
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	return c.read(ctx, op, opts...)
}

// Range reads the keys in [key, end) linearizably, at most limit of them (0:
// all).
func (c *client) Range(ctx context.Context, key, end string, limit int64) history.Operation {
	op := history.Operation{Kind: history.Range, Key: key, End: end, Limit: limit}
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	return c.read(ctx, op, opts...)
}

// GetAt reads key as the store was at revision rev, linearizably: etcd
// answers from its history, or refuses a revision it compacted away
// (ErrCompacted) or has not reached (ErrFutureRev), both recorded fail.
func (c *client) GetAt(ctx context.Context, key string, rev int64) history.Operation {
	op := history.Operation{Kind: history.Get, Key: key, Revision: rev}
	return c.read(ctx, op, clientv3.WithRev(rev))
}

// RangeAt reads the keys in [key, end) as the store was at revision rev, at
// most limit of them (0: all): a page of a list at one revision.
func (c *client) RangeAt(ctx context.Context, key, end string, limit, rev int64) history.Operation {
	op := history.Operation{Kind: history.Range, Key: key, End: end, Limit: limit, Revision: rev}
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(rev)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	return c.read(ctx, op, opts...)
}

// Put writes a value unique to the run to key, attached to lease unless it
// is 0.
func (c *client) Put(ctx context.Context, key string, lease int64) history.Operation {
	op := c.newWrite(history.Put, key, "")
	op.Lease = lease
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(lease)))
	}
	return c.do(ctx, op, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Put(ctx, key, op.Value, opts...)
		if err != nil {
			return nil, err
		}
		return headerOnly(resp.Header), nil
	})
}

// Delete deletes key.
func (c *client) Delete(ctx context.Context, key string) history.Operation {
	return c.do(ctx, history.Operation{Kind: history.Delete, Key: key}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Delete(ctx, key)
		if err != nil {
			return nil, err
		}
		r := headerOnly(resp.Header)
		r.Deleted = resp.Deleted
		return r, nil
	})
}

// CAS is a compare-and-set: if key's mod revision is ExpectModRev (0: the key
// is absent), put a value unique to the run, else get key.
type CAS struct {
	Key          string
	ExpectModRev int64
	// ValuePrefix starts the written value; the rest is unique to the run.
	ValuePrefix string
	// Guards are further compares the history cannot express (a lock's
	// ownership). When the txn fails although the recorded compare held,
	// a guard failed, and what the client learned is only the key's
	// value: the operation is recorded as the get of its else branch,
	// because recorded as a txn it would claim the compare failed.
	Guards []clientv3.Cmp
}

// CompareAndPut runs req as one txn.
func (c *client) CompareAndPut(ctx context.Context, req CAS) history.Operation {
	op := c.newWrite(history.Txn, req.Key, req.ValuePrefix)
	op.ExpectModRev = req.ExpectModRev
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(req.Key), "=", req.ExpectModRev)}, req.Guards...)
	return c.do(ctx, op, func(ctx context.Context, op *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Txn(ctx).If(cmps...).
			Then(clientv3.OpPut(req.Key, op.Value)).
			Else(clientv3.OpGet(req.Key)).
			Commit()
		if err != nil {
			return nil, err
		}
		r := txnResponse(resp)
		if !resp.Succeeded && len(req.Guards) > 0 && firstModRev(r.KVs) == req.ExpectModRev {
			op.Kind, op.Value, op.ExpectModRev = history.Get, "", 0
		}
		return r, nil
	})
}

// CompareAndDelete deletes key if its mod revision is expectModRev (0: the
// key is absent, and the delete removes nothing), else gets it: the
// delete a Kubernetes apiserver sends, on the mod revision it last read.
// It is recorded as a txn with then "delete".
func (c *client) CompareAndDelete(ctx context.Context, key string, expectModRev int64) history.Operation {
	op := history.Operation{Kind: history.Txn, Key: key, ExpectModRev: expectModRev, Then: history.Delete}
	return c.do(ctx, op, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", expectModRev)).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, err
		}
		return txnResponse(resp), nil
	})
}

// CompareValueAndPut is a compare-and-set on the value: if key holds
// expect, put a value unique to the run, else get key. etcd fails a value
// compare on a missing key, whatever expect is. It is recorded as a txn
// with expect_value and else_get.
func (c *client) CompareValueAndPut(ctx context.Context, key, expect string) history.Operation {
	op := c.newWrite(history.Txn, key, "")
	op.ExpectValue, op.ElseGet = &expect, true
	return c.do(ctx, op, func(ctx context.Context, op *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", expect)).
			Then(clientv3.OpPut(key, op.Value)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, err
		}
		return txnResponse(resp), nil
	})
}

// txnResponse records a txn of one request in the branch that ran (a put
// or a delete then, a get else): which branch ran, how many keys its
// delete removed, and what its get returned.
func txnResponse(resp *clientv3.TxnResponse) *history.Response {
	r := headerOnly(resp.Header)
	r.Succeeded = resp.Succeeded
	if len(resp.Responses) > 0 {
		if rr := resp.Responses[0].GetResponseRange(); rr != nil {
			r.KVs = convKVs(rr.Kvs)
		}
		if dr := resp.Responses[0].GetResponseDeleteRange(); dr != nil {
			r.Deleted = dr.Deleted
		}
	}
	return r
}

// Grant grants a lease of ttl seconds.
func (c *client) Grant(ctx context.Context, ttl int64) history.Operation {
	return c.do(ctx, history.Operation{Kind: history.LeaseGrant, TTL: ttl}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Grant(ctx, ttl)
		if err != nil {
			return nil, err
		}
		r := headerOnly(resp.ResponseHeader)
		r.LeaseID, r.TTL = int64(resp.ID), resp.TTL
		return r, nil
	})
}

// KeepAliveOnce renews lease once.
func (c *client) KeepAliveOnce(ctx context.Context, lease int64) history.Operation {
	return c.do(ctx, history.Operation{Kind: history.LeaseKeepAlive, Lease: lease}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
		if err != nil {
			return nil, err
		}
		r := headerOnly(resp.ResponseHeader)
		r.LeaseID, r.TTL = int64(resp.ID), resp.TTL
		return r, nil
	})
}

// Revoke revokes lease.
func (c *client) Revoke(ctx context.Context, lease int64) history.Operation {
	return c.do(ctx, history.Operation{Kind: history.LeaseRevoke, Lease: lease}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Revoke(ctx, clientv3.LeaseID(lease))
		if err != nil {
			return nil, err
		}
		return headerOnly(resp.Header), nil
	})
}

// Compact compacts the store's history at rev. It is recorded with the
// revision it asked for; the response header is the serving member's
// revision read after it applied the compaction.
func (c *client) Compact(ctx context.Context, rev int64) history.Operation {
	return c.do(ctx, history.Operation{Kind: history.Compact, Revision: rev}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Compact(ctx, rev)
		if err != nil {
			return nil, err
		}
		return headerOnly(resp.Header), nil
	})
}

// Defragment defragments the backend of the member at endpoint, recorded
// with that endpoint.
func (c *client) Defragment(ctx context.Context, endpoint string) history.Operation {
	c.endpoint = endpoint
	return c.do(ctx, history.Operation{Kind: history.Defragment}, func(ctx context.Context, _ *history.Operation) (*history.Response, error) {
		resp, err := c.cli.Defragment(ctx, endpoint)
		if err != nil {
			return nil, err
		}
		return headerOnly(resp.Header), nil
	})
}

// WatchRequest is a watch a traffic actor chooses: the range [Key, End)
// (End "" is the single Key), the revision to start from (0: the next one)
// and whether events carry the previous key-value. Every watch asks for
// progress notifications.
type WatchRequest struct {
	Key, End string
	Revision int64
	PrevKV   bool
}

// WatchStream is one recorded watch stream: Next records every response,
// Close records the stream as one history.Watch. One goroutine reads it;
// RequestProgress, Heard and Cancel may be called from others.
type WatchStream struct {
	c      *client
	w      history.Watch
	ctx    context.Context
	cancel context.CancelFunc
	ch     clientv3.WatchChan
	// heard is when the stream last answered (or was opened), in the
	// recorder's clock.
	heard atomic.Int64
	ended bool
}

// Watch opens a watch stream for req. The stream lives until ctx is done,
// Cancel, or the server or client library ends it; read it with Next and
// record it with Close.
func (c *client) Watch(ctx context.Context, req WatchRequest) *WatchStream {
	id := c.rec.NextID()
	// Each recorded watch gets a gRPC stream of its own (the client shares
	// one among contexts with equal metadata): a resumed watch must not
	// inherit a stream on which etcd no longer answers progress requests.
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
		"etcd-chaos-watch", strconv.FormatInt(id, 10)))
	s := &WatchStream{c: c, ctx: sctx, cancel: cancel, w: history.Watch{
		ID:            id,
		ClientID:      c.id,
		Key:           req.Key,
		End:           req.End,
		StartRevision: req.Revision,
		PrevKV:        req.PrevKV,
		Endpoint:      c.endpoint,
		Call:          c.rec.Now(),
	}}
	s.heard.Store(s.w.Call)
	opts := []clientv3.OpOption{clientv3.WithProgressNotify()}
	if req.End != "" {
		opts = append(opts, clientv3.WithRange(req.End))
	}
	if req.Revision > 0 {
		opts = append(opts, clientv3.WithRev(req.Revision))
	}
	if req.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	s.ch = c.cli.Watch(sctx, req.Key, opts...)
	return s
}

// Next waits for the stream's next response and records it. It returns
// false once the stream is over: the channel closed, or the response before
// ended it (canceled, compacted, no leader), after which the channel closes
// at once.
func (s *WatchStream) Next() (history.WatchResponse, bool) {
	if s.ended {
		return history.WatchResponse{}, false
	}
	resp, ok := <-s.ch
	if !ok {
		s.ended = true
		return history.WatchResponse{}, false
	}
	r := history.WatchResponse{
		Time:            s.c.rec.Now(),
		Revision:        resp.Header.Revision,
		Progress:        resp.IsProgressNotify(),
		Canceled:        resp.Canceled,
		CompactRevision: resp.CompactRevision,
	}
	if err := resp.Err(); err != nil {
		r.Error = err.Error()
	}
	if len(resp.Events) > 0 {
		r.Events = make([]history.Event, len(resp.Events))
		for i, ev := range resp.Events {
			r.Events[i] = convEvent(ev)
		}
	}
	s.heard.Store(r.Time)
	s.w.Responses = append(s.w.Responses, r)
	if resp.Canceled || resp.Err() != nil {
		s.ended = true
	}
	return r, true
}

// Heard returns when the stream last answered, or was opened when it has
// not answered yet, in the recorder's clock.
func (s *WatchStream) Heard() int64 { return s.heard.Load() }

// Canceled reports whether the stream was ended by Cancel or its context
// rather than by the server or the client library.
func (s *WatchStream) Canceled() bool { return s.ctx.Err() != nil }

// RequestProgress asks etcd for a progress notification on this stream,
// waiting at most timeout: the client blocks while it reconnects. It must
// use the stream's own context, by whose metadata the client finds the
// gRPC stream. Its answer, if any, arrives through Next.
func (s *WatchStream) RequestProgress(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	return s.c.cli.RequestProgress(ctx)
}

// Cancel ends the stream; Next then drains what is left and returns false.
func (s *WatchStream) Cancel() { s.cancel() }

// Close ends the stream and records it with every response Next read. Call
// it once, from the goroutine that reads the stream.
func (s *WatchStream) Close() history.Watch {
	s.cancel()
	s.c.rec.AddWatch(s.w)
	return s.w
}
