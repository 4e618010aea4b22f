// Package faultproxy is a fault-injecting TCP proxy for a cluster whose
// members all live on 127.0.0.1. One proxy sits in front of each member's
// peer port and one in front of each client port; members advertise the
// proxy addresses, so every byte between members, and between clients and
// members, crosses a proxy that a Network controls.
//
// Faults apply to connections that are already open, not only to new ones,
// because etcd keeps its peer streams and client gRPC connections open for
// the life of the process: a fault that only refuses new connections (a
// NetworkPolicy, say) is not a partition at all.
//
// Because every member dials from 127.0.0.1, the proxy cannot tell who is
// calling by address. It reads the first HTTP request head on each peer
// connection instead: etcd's rafthttp stamps stream, pipeline and snapshot
// requests with `X-Server-From: <sender member ID in hex>`. Connections
// without the header (/members, /version, /raft/probing) have an unknown
// source and are treated as cut whenever their destination has any cut, so a
// partitioned member is unreachable, as it would be behind iptables.
//
// With peer TLS (WithPeerTLS) a peer proxy terminates TLS, reads the head,
// and opens TLS of its own to the member: the header is encrypted on the
// wire, so a proxy that only forwarded bytes could not tell senders apart.
// The members still speak TLS, with certificates checked at both ends.
package faultproxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LossRTO is how long a "lost" chunk is held back. Dropping bytes inside a
// TCP stream would corrupt it, which real packet loss never does: TCP
// retransmits, and what the application sees is the data arriving one
// retransmission timeout late (Linux's minimum RTO is 200 ms). So loss is
// modelled as that delay, and later data waits behind it (head-of-line
// blocking), exactly as in a real stream.
const LossRTO = 200 * time.Millisecond

// Kind tells what a proxy fronts.
type Kind int

const (
	// Peer proxies front a member's peer (raft) port and sniff the sender.
	Peer Kind = iota
	// Client proxies front a member's client (gRPC) port.
	Client
)

func (k Kind) String() string {
	if k == Peer {
		return "peer"
	}
	return "client"
}

// Option configures a Network.
type Option func(*Network)

// WithSeed seeds the loss decisions, so a run can be replayed.
func WithSeed(seed int64) Option {
	return func(n *Network) { n.rng = rand.New(rand.NewSource(seed)) }
}

// WithDialTimeout bounds how long a proxy waits to reach its target.
func WithDialTimeout(d time.Duration) Option {
	return func(n *Network) { n.dialTimeout = d }
}

// WithPeerTLS makes peer proxies TLS endpoints: server accepts the
// members' TLS (and should demand their client certificates), client is
// what the proxy presents to the member behind it.
func WithPeerTLS(server, client *tls.Config) Option {
	return func(n *Network) { n.peerServerTLS, n.peerClientTLS = server, client }
}

// Network holds the proxies of one cluster and the faults they enforce.
// All methods are safe for concurrent use.
type Network struct {
	dialTimeout   time.Duration
	peerServerTLS *tls.Config
	peerClientTLS *tls.Config

	mu       sync.Mutex
	rng      *rand.Rand
	names    map[string]string // member ID in lowercase hex -> member name
	cuts     map[pair]bool
	isolated map[string]bool
	degraded map[string]degradation
	proxies  []*Proxy
	conns    map[*conn]bool
	closed   bool

	wg sync.WaitGroup
}

type pair struct{ a, b string }

func mkpair(a, b string) pair {
	if b < a {
		a, b = b, a
	}
	return pair{a, b}
}

type degradation struct {
	latency time.Duration
	loss    float64
}

// New returns an empty Network with no faults.
func New(opts ...Option) *Network {
	n := &Network{
		dialTimeout: 2 * time.Second,
		rng:         rand.New(rand.NewSource(1)),
		names:       map[string]string{},
		cuts:        map[pair]bool{},
		isolated:    map[string]bool{},
		degraded:    map[string]degradation{},
		conns:       map[*conn]bool{},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// Proxy is one listener forwarding to one member port.
type Proxy struct {
	n      *Network
	member string
	kind   Kind
	ln     net.Listener

	mu     sync.Mutex
	target string
}

// ListenPeer starts a proxy for member's peer port: it listens on listenAddr
// ("127.0.0.1:0" picks a port) and forwards to target.
func (n *Network) ListenPeer(member, listenAddr, target string) (*Proxy, error) {
	return n.listen(Peer, member, listenAddr, target)
}

// ListenClient starts a proxy for member's client port.
func (n *Network) ListenClient(member, listenAddr, target string) (*Proxy, error) {
	return n.listen(Client, member, listenAddr, target)
}

func (n *Network) listen(kind Kind, member, listenAddr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("%s proxy for %s cannot listen on %s: %w", kind, member, listenAddr, err)
	}
	p := &Proxy{n: n, member: member, kind: kind, ln: ln, target: target}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return nil, errors.New("faultproxy: network is closed")
	}
	n.proxies = append(n.proxies, p)
	n.wg.Add(1)
	n.mu.Unlock()
	go p.accept()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Member names the member the proxy fronts.
func (p *Proxy) Member() string { return p.member }

// SetTarget changes where new connections are forwarded, for a member that
// restarted on other ports. Open connections keep their target.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// Target is where the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetMemberIDs tells the network which member each raft member ID belongs
// to, so peer connections can be attributed to a sender. It adds to what
// it was told before: a member removed and added back under the same name
// gets a new ID, which must be told before the new member dials anyone.
func (n *Network) SetMemberIDs(ids map[uint64]string) {
	n.mu.Lock()
	for id, name := range ids {
		n.names[strconv.FormatUint(id, 16)] = name
	}
	drop := n.blockedConnsLocked()
	n.mu.Unlock()
	closeAll(drop)
}

// Cut stops all peer traffic between members a and b in both directions:
// open connections between them are closed now, and new ones are accepted
// but black-holed until Heal, so senders time out as behind a DROP rule.
func (n *Network) Cut(a, b string) {
	if a == b {
		return
	}
	n.mu.Lock()
	n.cuts[mkpair(a, b)] = true
	drop := n.blockedConnsLocked()
	n.mu.Unlock()
	closeAll(drop)
}

// IsolateClient stops all client traffic to member, open connections
// included, until Heal.
func (n *Network) IsolateClient(member string) {
	n.mu.Lock()
	n.isolated[member] = true
	drop := n.blockedConnsLocked()
	n.mu.Unlock()
	closeAll(drop)
}

// Degrade delays every chunk member sends to its peers by latency, and holds
// back a fraction loss (0..1) of them by an extra LossRTO. Like netem on an
// interface, it acts on what the member sends, so a request-response pair
// with one degraded end takes one extra latency.
func (n *Network) Degrade(member string, latency time.Duration, loss float64) error {
	if latency < 0 || loss < 0 || loss > 1 {
		return fmt.Errorf("degrade %s: latency must be >= 0 and loss in 0..1 (got %v, %v)", member, latency, loss)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.degraded[member] = degradation{latency, loss}
	return nil
}

// Heal removes every fault and closes black-holed connections, so their
// senders reconnect at once.
func (n *Network) Heal() {
	n.mu.Lock()
	n.cuts = map[pair]bool{}
	n.isolated = map[string]bool{}
	n.degraded = map[string]degradation{}
	var drop []*conn
	for c := range n.conns {
		if c.blackholed {
			drop = append(drop, c)
		}
	}
	n.mu.Unlock()
	closeAll(drop)
}

// Stats counts the connections the network holds.
type Stats struct {
	Forwarding int // connections passing data
	Blackholed int // connections accepted but swallowing data
}

// Stats returns connection counts, for tests and diagnostics.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s Stats
	for c := range n.conns {
		if c.blackholed {
			s.Blackholed++
		} else {
			s.Forwarding++
		}
	}
	return s
}

// Close stops every listener and connection and waits for all of the
// network's goroutines to end. It is safe to call more than once.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	proxies := n.proxies
	n.proxies = nil
	var conns []*conn
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, p := range proxies {
		p.ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
	n.wg.Wait()
	return nil
}

// blockedConnsLocked lists the forwarding connections the current faults
// block. The caller closes them after unlocking, before returning, so a
// fault is in force when its method returns. Closing is what stops an open
// stream: a blocked connection left open would still deliver whatever the
// kernel had buffered.
func (n *Network) blockedConnsLocked() []*conn {
	var out []*conn
	for c := range n.conns {
		if !c.blackholed && c.attributed && n.blockedLocked(c) {
			out = append(out, c)
		}
	}
	return out
}

func closeAll(cs []*conn) {
	for _, c := range cs {
		c.close()
	}
}

// blockedLocked tells whether the faults forbid traffic on c.
func (n *Network) blockedLocked(c *conn) bool {
	p := c.p
	if p.kind == Client {
		return n.isolated[p.member]
	}
	src := n.names[c.from]
	if src == "" {
		// Unknown sender: unreachable while the destination is cut from
		// anyone.
		for k := range n.cuts {
			if k.a == p.member || k.b == p.member {
				return true
			}
		}
		return false
	}
	return n.cuts[mkpair(src, p.member)]
}

// delay returns how long a chunk travelling on c in the given direction
// must wait. toTarget is true for bytes from the dialer to the member.
func (n *Network) delay(c *conn, toTarget bool) time.Duration {
	if c.p.kind != Peer {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.degraded) == 0 {
		return 0
	}
	sender := c.p.member // the member answers on its own peer port
	if toTarget {
		sender = n.names[c.from]
	}
	d, ok := n.degraded[sender]
	if !ok {
		return 0
	}
	wait := d.latency
	if d.loss > 0 && n.rng.Float64() < d.loss {
		wait += LossRTO
	}
	return wait
}

func (p *Proxy) accept() {
	defer p.n.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := &conn{p: p, down: down, done: make(chan struct{})}
		p.n.mu.Lock()
		if p.n.closed {
			p.n.mu.Unlock()
			down.Close()
			return
		}
		p.n.conns[c] = true
		p.n.wg.Add(1)
		p.n.mu.Unlock()
		go c.serve()
	}
}

// conn is one accepted connection and, once forwarding, its upstream.
type conn struct {
	p    *Proxy
	down net.Conn
	done chan struct{}

	// Guarded by Network.mu.
	from       string // sender's member ID in hex; "" when unknown
	attributed bool   // source decided (after sniffing on peer proxies)
	blackholed bool

	mu     sync.Mutex
	up     net.Conn // guarded by mu, as is down once serving starts (TLS swaps it)
	closed bool
}

func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	up, down := c.up, c.down
	c.mu.Unlock()
	down.Close()
	if up != nil {
		up.Close()
	}
	c.p.n.mu.Lock()
	delete(c.p.n.conns, c)
	c.p.n.mu.Unlock()
}

func (c *conn) setUp(up net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.up = up
	return true
}

const maxHead = 16 << 10

func (c *conn) serve() {
	n := c.p.n
	defer n.wg.Done()
	defer c.close()

	var head []byte
	var from string
	tlsPeer := c.p.kind == Peer && n.peerServerTLS != nil
	if tlsPeer {
		tc := tls.Server(c.down, n.peerServerTLS)
		_ = tc.SetDeadline(time.Now().Add(n.dialTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		c.mu.Lock()
		c.down = tc
		c.mu.Unlock()
	}
	if c.p.kind == Peer {
		var err error
		head, from, err = sniff(c.down)
		if err != nil && len(head) == 0 {
			return
		}
	}
	n.mu.Lock()
	c.from = from
	c.attributed = true
	c.blackholed = n.blockedLocked(c)
	n.mu.Unlock()
	if c.blackholed {
		// Swallow everything until Heal or Close closes us: the sender
		// sees silence, not a refusal.
		_, _ = io.Copy(io.Discard, c.down)
		return
	}
	var up net.Conn
	var err error
	if tlsPeer {
		up, err = tls.DialWithDialer(&net.Dialer{Timeout: n.dialTimeout}, "tcp", c.p.Target(), n.peerClientTLS)
	} else {
		up, err = net.DialTimeout("tcp", c.p.Target(), n.dialTimeout)
	}
	if err != nil {
		return // the member is down: the dialer sees its connection close
	}
	if !c.setUp(up) {
		up.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(c.down, up, true, head) }()
	go func() { defer wg.Done(); c.pipe(up, c.down, false, nil) }()
	wg.Wait()
}

// sniff reads the first request head from a peer connection and returns
// every byte it read (to be forwarded first) and the X-Server-From value.
func sniff(r io.Reader) (head []byte, from string, err error) {
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for len(buf) < maxHead {
		k, rerr := r.Read(tmp)
		buf = append(buf, tmp[:k]...)
		if len(buf) > 0 && (buf[0] < 'A' || buf[0] > 'Z') {
			return buf, "", nil // not HTTP: nothing to learn
		}
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf, headerFrom(buf[:i]), nil
		}
		if rerr != nil {
			return buf, "", rerr
		}
	}
	return buf, "", nil
}

func headerFrom(head []byte) string {
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "X-Server-From") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return ""
		}
		return strconv.FormatUint(id, 16)
	}
	return ""
}

type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipe copies src to dst. A reader stamps each chunk with the time it may
// be delivered and a writer delivers in order, so latency delays data
// without limiting throughput to one chunk per latency, as on a real link.
func (c *conn) pipe(src, dst net.Conn, toTarget bool, first []byte) {
	ch := make(chan chunk, 64)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		var timer *time.Timer
		for ck := range ch {
			if d := time.Until(ck.due); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-c.done:
					bufPool.Put(ck.buf)
					continue // drain
				}
			}
			_, err := dst.Write((*ck.buf)[:ck.n])
			bufPool.Put(ck.buf)
			if err != nil {
				c.close()
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	var last time.Time
	send := func(b *[]byte, k int) bool {
		due := time.Now()
		if d := c.p.n.delay(c, toTarget); d > 0 {
			due = due.Add(d)
		}
		if due.Before(last) {
			due = last // TCP delivers in order: later data waits behind earlier
		}
		last = due
		select {
		case ch <- chunk{b, k, due}:
			return true
		case <-c.done:
			bufPool.Put(b)
			return false
		}
	}
	for len(first) > 0 {
		b := bufPool.Get().(*[]byte)
		k := copy(*b, first)
		first = first[k:]
		if !send(b, k) {
			break
		}
	}
	var readErr error
	for {
		b := bufPool.Get().(*[]byte)
		k, err := src.Read(*b)
		if k > 0 {
			if !send(b, k) {
				break
			}
		} else {
			bufPool.Put(b)
		}
		if err != nil {
			readErr = err
			break
		}
	}
	close(ch)
	<-writerDone
	if errors.Is(readErr, io.EOF) {
		// Half-close: pass the end of stream on, the other direction may
		// still be talking.
		if hc, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
			return
		}
	}
	c.close()
}
