package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Member IDs as rafthttp would print them (types.ID.String(): hex).
const (
	idA uint64 = 0x8e9e05c52164694d
	idB uint64 = 0x91bc3c398fb3c146
	idC uint64 = 0xfd422379fda50e48
)

var ids = map[uint64]string{idA: "a", idB: "b", idC: "c"}

// echoServer accepts connections and echoes every byte back.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

type cluster struct {
	n      *Network
	peer   map[string]*Proxy
	client map[string]*Proxy
}

// newCluster puts a peer and a client proxy for members a, b, c in front of
// echo servers.
func newCluster(t testing.TB, opts ...Option) *cluster {
	t.Helper()
	c := &cluster{n: New(opts...), peer: map[string]*Proxy{}, client: map[string]*Proxy{}}
	t.Cleanup(func() { c.n.Close() })
	for _, m := range []string{"a", "b", "c"} {
		var err error
		if c.peer[m], err = c.n.ListenPeer(m, "127.0.0.1:0", echoServer(t)); err != nil {
			t.Fatal(err)
		}
		if c.client[m], err = c.n.ListenClient(m, "127.0.0.1:0", echoServer(t)); err != nil {
			t.Fatal(err)
		}
	}
	c.n.SetMemberIDs(ids)
	return c
}

func head(from uint64) string {
	h := "GET /raft/stream/msgapp/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	if from != 0 {
		h += fmt.Sprintf("X-Server-From: %x\r\n", from)
	}
	return h + "\r\n"
}

// dialPeer opens a connection to addr as member `from` (0: no header) and
// checks that the request head comes back intact from the echo server.
func dial(t testing.TB, addr string, from uint64, isPeer bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if isPeer {
		if _, err := c.Write([]byte(head(from))); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// roundTrip writes msg and expects it echoed within a generous bound.
func roundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// readHead consumes the echoed request head.
func readHead(t testing.TB, c net.Conn, from uint64) {
	t.Helper()
	want := head(from)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("echoed head = %q, %v; want %q (the sniffer must not lose bytes)", got, err, want)
	}
	c.SetReadDeadline(time.Time{})
}

// expectClosed asserts the connection ends (EOF or reset), not just stalls.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // drain whatever was in flight before the cut
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open 5s after the fault; want it closed")
		}
		return
	}
}

// expectSilent asserts no data arrives for a while, and the connection stays
// open (a black hole, not a refusal).
func expectSilent(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read on black-holed connection = %d bytes, %v; want a timeout", n, err)
	}
}

func TestForwardsAndSniffsWithoutLosingBytes(t *testing.T) {
	c := newCluster(t)
	conn := dial(t, c.peer["b"].Addr(), idA, true)
	readHead(t, conn, idA)
	if err := roundTrip(conn, "hello raft"); err != nil {
		t.Fatal(err)
	}
	// A non-HTTP client on a peer proxy passes through untouched.
	raw := dial(t, c.peer["b"].Addr(), 0, false)
	if err := roundTrip(raw, "\x00\x01binary"); err != nil {
		t.Fatal(err)
	}
	cl := dial(t, c.client["b"].Addr(), 0, false)
	if err := roundTrip(cl, "grpc bytes"); err != nil {
		t.Fatal(err)
	}
}

func TestCutClosesOpenConnectionsBothWays(t *testing.T) {
	c := newCluster(t)
	ab := dial(t, c.peer["b"].Addr(), idA, true) // a -> b, lives in b's proxy
	readHead(t, ab, idA)
	ba := dial(t, c.peer["a"].Addr(), idB, true) // b -> a, lives in a's proxy
	readHead(t, ba, idB)
	cb := dial(t, c.peer["b"].Addr(), idC, true) // c -> b: not cut
	readHead(t, cb, idC)
	for _, x := range []net.Conn{ab, ba, cb} {
		if err := roundTrip(x, "before"); err != nil {
			t.Fatal(err)
		}
	}

	c.n.Cut("a", "b")
	expectClosed(t, ab)
	expectClosed(t, ba)
	if err := roundTrip(cb, "c still talks to b"); err != nil {
		t.Fatalf("c->b broken by cut a-b: %v", err)
	}
	cl := dial(t, c.client["a"].Addr(), 0, false)
	if err := roundTrip(cl, "clients stay up"); err != nil {
		t.Fatalf("client traffic broken by a peer cut: %v", err)
	}

	// New connections from a cut source are accepted and swallowed.
	ab2 := dial(t, c.peer["b"].Addr(), idA, true)
	expectSilent(t, ab2, "anyone?")
	// Unknown-source connections to a cut member are swallowed too ...
	unk := dial(t, c.peer["b"].Addr(), 0, true)
	expectSilent(t, unk, "probe")
	// ... but reach a member that has no cut.
	unkC := dial(t, c.peer["c"].Addr(), 0, true)
	readHead(t, unkC, 0)
	if err := roundTrip(unkC, "probe c"); err != nil {
		t.Fatal(err)
	}
	if s := c.n.Stats(); s.Blackholed != 2 {
		t.Errorf("stats = %+v, want 2 black-holed", s)
	}

	c.n.Heal()
	expectClosed(t, ab2) // closed at heal, so the sender reconnects now
	expectClosed(t, unk)
	ab3 := dial(t, c.peer["b"].Addr(), idA, true)
	readHead(t, ab3, idA)
	if err := roundTrip(ab3, "after heal"); err != nil {
		t.Fatal(err)
	}
}

func TestIsolateClient(t *testing.T) {
	c := newCluster(t)
	open := dial(t, c.client["a"].Addr(), 0, false)
	if err := roundTrip(open, "x"); err != nil {
		t.Fatal(err)
	}
	other := dial(t, c.client["b"].Addr(), 0, false)
	peer := dial(t, c.peer["a"].Addr(), idB, true)
	readHead(t, peer, idB)

	c.n.IsolateClient("a")
	expectClosed(t, open)
	expectSilent(t, dial(t, c.client["a"].Addr(), 0, false), "x")
	if err := roundTrip(other, "b's clients are fine"); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(peer, "peers are fine"); err != nil {
		t.Fatal(err)
	}
	c.n.Heal()
	if err := roundTrip(dial(t, c.client["a"].Addr(), 0, false), "back"); err != nil {
		t.Fatal(err)
	}
}

// TestCutStopsStreamingHTTP uses a real HTTP server streaming a response, as
// rafthttp's stream handler does, to a client that sets X-Server-From.
func TestCutStopsStreamingHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Server-From") == "" {
			http.Error(w, "no sender", http.StatusBadRequest)
			return
		}
		f := w.(http.Flusher)
		for {
			if _, err := io.WriteString(w, "heartbeat\n"); err != nil {
				return
			}
			f.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	n := New()
	defer n.Close()
	pb, err := n.ListenPeer("b", "127.0.0.1:0", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	n.SetMemberIDs(ids)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+pb.Addr()+"/raft/stream/msgapp/8e9e05c52164694d", nil)
	req.Header.Set("X-Server-From", fmt.Sprintf("%x", idA))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("stream before cut: %v", err)
		}
	}
	n.Cut("b", "a")
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := r.ReadString('\n'); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("HTTP stream still delivering 5s after Cut")
	}
}

func TestDegradeDelaysWhatTheMemberSends(t *testing.T) {
	c := newCluster(t, WithSeed(42))
	// Echo through b's peer proxy from a: the reply is what b sends.
	conn := dial(t, c.peer["b"].Addr(), idA, true)
	readHead(t, conn, idA)
	const lat = 100 * time.Millisecond
	if err := c.n.Degrade("b", lat, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := roundTrip(conn, "slow"); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the delay guarantees it, scheduling can only add.
	if d := time.Since(start); d < lat {
		t.Errorf("round trip took %v with %v latency on b", d, lat)
	}
	if err := c.n.Degrade("b", lat, 1); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := roundTrip(conn, "lossy"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < lat+LossRTO {
		t.Errorf("round trip took %v with latency %v and loss 1", d, lat)
	}
	if err := c.n.Degrade("b", 0, 2); err == nil {
		t.Error("Degrade accepted loss 2")
	}
	c.n.Heal()
	if err := roundTrip(conn, "fast again"); err != nil {
		t.Fatal(err)
	}
}

func TestDegradeKeepsOrderAndData(t *testing.T) {
	c := newCluster(t, WithSeed(7))
	conn := dial(t, c.peer["b"].Addr(), idA, true)
	readHead(t, conn, idA)
	if err := c.n.Degrade("b", 5*time.Millisecond, 0.3); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	go conn.Write(want.Bytes())
	got := make([]byte, want.Len())
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("degraded stream reordered or corrupted data (seed 7)")
	}
}

func TestDeadTargetClosesConnection(t *testing.T) {
	n := New(WithDialTimeout(500 * time.Millisecond))
	defer n.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p, err := n.ListenClient("a", "127.0.0.1:0", dead)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, dial(t, p.Addr(), 0, false))
	// SetTarget lets a restarted member on a new port be reached.
	p.SetTarget(echoServer(t))
	if err := roundTrip(dial(t, p.Addr(), 0, false), "up"); err != nil {
		t.Fatal(err)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		n := New()
		p, err := n.ListenPeer("b", "127.0.0.1:0", echoServer(t))
		if err != nil {
			t.Fatal(err)
		}
		n.SetMemberIDs(ids)
		live := dial(t, p.Addr(), idC, true) // forwarding at Close
		readHead(t, live, idC)
		n.Cut("a", "b")
		bh := dial(t, p.Addr(), idA, true) // black-holed at Close
		expectSilent(t, bh, "x")
		idle, _ := net.Dial("tcp", p.Addr()) // still sniffing at Close
		defer idle.Close()
		n.Close()
		n.Close() // idempotent
		if _, err := net.Dial("tcp", p.Addr()); err == nil {
			t.Error("listener still accepting after Close")
		}
	}()
	// Goroutines end asynchronously (the echo servers' cleanups run later
	// via t.Cleanup, so allow for theirs); poll rather than sleep.
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before+3 { // echo server accept loop + its handler goroutines
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			os.Stderr.Write(buf[:runtime.Stack(buf, true)])
			t.Fatalf("goroutines: %d before, %d after Close", before, now)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkCutLatency measures the time from Cut until an open connection
// that is actively streaming (member b sending to a, as a raft stream does)
// stops delivering data.
func BenchmarkCutLatency(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil { // the request head
					return
				}
				for {
					if _, err := c.Write(buf[:1024]); err != nil {
						return
					}
				}
			}()
		}
	}()
	n := New()
	defer n.Close()
	p, err := n.ListenPeer("b", "127.0.0.1:0", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	n.SetMemberIDs(ids)
	buf := make([]byte, 32<<10)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			b.Fatal(err)
		}
		c.Write([]byte(head(idA)))
		if _, err := io.ReadAtLeast(c, buf, 64<<10/2); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		n.Cut("a", "b")
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		total += time.Since(start)
		b.StopTimer()
		c.Close()
		n.Heal()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/cut")
}

// BenchmarkThroughput pushes data through a peer proxy to an echo server and
// back; MB/s counts bytes one way.
func BenchmarkThroughput(b *testing.B) {
	n := New()
	defer n.Close()
	p, err := n.ListenPeer("b", "127.0.0.1:0", echoServer(b))
	if err != nil {
		b.Fatal(err)
	}
	n.SetMemberIDs(ids)
	c := dial(b, p.Addr(), idA, true)
	readHead(b, c, idA)
	msg := bytes.Repeat([]byte("x"), 256<<10)
	got := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		errc := make(chan error, 1)
		go func() { _, err := c.Write(msg); errc <- err }()
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}
