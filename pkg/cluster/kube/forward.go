package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// forward is one live port-forward to one pod incarnation.
type forward struct {
	addr string        // local host:port that reaches the pod's port
	uid  types.UID     // the pod incarnation it reaches
	done chan struct{} // closed when the forward died
	stop func()
}

func (f *forward) alive() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

// forwardFunc opens a port-forward to namespace/pod:port.
type forwardFunc func(ctx context.Context, namespace, pod string, port int) (*forward, error)

// clientGoForward opens a client-go SPDY port-forward on 127.0.0.1:0.
func (p *Provider) clientGoForward(ctx context.Context, namespace, pod string, port int) (*forward, error) {
	if p.rest == nil {
		return nil, errors.New("port-forward needs a REST config: build the provider from a kubeconfig")
	}
	transport, upgrader, err := spdy.RoundTripperFor(p.rest)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	u := p.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	fctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(fctx, dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, ready, io.Discard, io.Discard)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	f := &forward{done: make(chan struct{}), stop: cancel}
	var ferr error
	go func() {
		ferr = pf.ForwardPorts()
		close(f.done)
	}()
	select {
	case <-ready:
	case <-f.done:
		cancel()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %v (is the pod running? kubectl -n %s get pod %s)", namespace, pod, port, ferr, namespace, pod)
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("port-forward to %s: %v", pod, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		cancel()
		return nil, fmt.Errorf("port-forward to %s: no local port (%w)", pod, err)
	}
	f.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	return f, nil
}

// memberProxy gives a member a ClientURL that outlives its pod. A
// port-forward is bound to one pod incarnation and dies with it, so the
// proxy listens on a fixed local port and, for each new client connection,
// dials through the current forward, opening a fresh one when the old
// one died or the pod was replaced (its UID changed).
type memberProxy struct {
	namespace, pod string
	port           int
	ln             net.Listener
	open           forwardFunc
	podUID         func(ctx context.Context) (types.UID, error)
	logf           func(string, ...any)

	mu     sync.Mutex
	fw     *forward
	empty  int // connections in a row the forward closed without a byte
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newMemberProxy(namespace, pod string, port int, open forwardFunc, podUID func(context.Context) (types.UID, error), logf func(string, ...any)) (*memberProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", pod, err)
	}
	mp := &memberProxy{namespace: namespace, pod: pod, port: port, ln: ln, open: open, podUID: podUID, logf: logf, conns: map[net.Conn]struct{}{}}
	mp.wg.Add(1)
	go mp.serve()
	return mp, nil
}

func (mp *memberProxy) Addr() string { return mp.ln.Addr().String() }

func (mp *memberProxy) serve() {
	defer mp.wg.Done()
	for {
		c, err := mp.ln.Accept()
		if err != nil {
			return
		}
		mp.wg.Add(1)
		go func() {
			defer mp.wg.Done()
			mp.handle(c)
		}()
	}
}

func (mp *memberProxy) handle(client net.Conn) {
	if !mp.track(client, true) {
		client.Close()
		return
	}
	defer mp.track(client, false)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	upstream, err := mp.dial(ctx)
	cancel()
	if err != nil {
		// The client sees a closed connection and retries, as it would if
		// the member were down, which it probably is.
		mp.logf("%s: %v", mp.pod, err)
		return
	}
	defer upstream.Close()
	// done says which direction ended: true for the pod's side.
	done := make(chan bool, 2)
	var got int64
	from := &readEnd{r: client}
	go func() { _, _ = io.Copy(upstream, from); done <- false }()
	go func() { got, _ = io.Copy(client, upstream); done <- true }()
	// etcd's gRPC never half-closes, so the first direction to end (client
	// gone, or the forward died with its pod) ends both.
	podFirst := <-done
	client.Close()
	upstream.Close()
	<-done
	// A client that hung up before the pod said anything (a dial timeout
	// on a loaded machine, a health probe cancelled) says nothing about
	// the forward; only a connection the pod's side ended counts. A failed
	// write to the pod is the pod's side too, though its copy may end
	// second.
	clientQuit := !podFirst && from.err != nil
	mp.served(got > 0, clientQuit)
}

// readEnd remembers why reading the client's side stopped.
type readEnd struct {
	r   io.Reader
	err error
}

func (e *readEnd) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// wedgedAfter is how many connections in a row a forward may close without
// a byte from the pod before it is replaced.
const wedgedAfter = 3

// served notes whether a connection got anything from the pod. A forward
// whose SPDY connection to the kubelet is wedged still accepts local
// connections but closes each one at once ("Error creating error stream:
// Timeout occurred") and never dies by itself; seen on kube-host after a
// rolling restart, it left a member unreachable for the rest of the run.
// A few empty connections in a row retire it, so the next dial opens a
// fresh one. While the member itself is down every connection is empty
// too, and a fresh forward costs nothing then. A connection its client
// closed first (clientQuit) counts neither way: retiring a forward on it
// would cut every live connection through the forward, which a loaded
// machine's slow dials once did to a healthy member.
func (mp *memberProxy) served(ok, clientQuit bool) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if ok {
		mp.empty = 0
		return
	}
	if clientQuit {
		return
	}
	mp.empty++
	if mp.empty >= wedgedAfter && mp.fw != nil {
		mp.logf("%s: port-forward closed %d connections in a row without an answer: opening a new one", mp.pod, mp.empty)
		mp.fw.stop()
		mp.fw = nil
		mp.empty = 0
	}
}

func (mp *memberProxy) track(c net.Conn, add bool) bool {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if add {
		if mp.closed {
			return false
		}
		mp.conns[c] = struct{}{}
		return true
	}
	delete(mp.conns, c)
	return true
}

// dial connects to the pod through a live forward to its current
// incarnation, replacing the forward if needed.
func (mp *memberProxy) dial(ctx context.Context) (net.Conn, error) {
	uid, err := mp.podUID(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 2; attempt++ {
		fw, err := mp.current(ctx, uid, attempt > 0)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", fw.addr)
		if err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("port-forward to %s/%s:%d does not accept connections", mp.namespace, mp.pod, mp.port)
}

func (mp *memberProxy) current(ctx context.Context, uid types.UID, force bool) (*forward, error) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if mp.closed {
		return nil, errors.New("cluster closed")
	}
	if mp.fw != nil && !force && mp.fw.uid == uid && mp.fw.alive() {
		return mp.fw, nil
	}
	if mp.fw != nil {
		mp.fw.stop()
		mp.fw = nil
	}
	fw, err := mp.open(ctx, mp.namespace, mp.pod, mp.port)
	if err != nil {
		return nil, err
	}
	fw.uid = uid
	mp.fw = fw
	return fw, nil
}

// Close stops listening, closes every proxied connection and the forward.
func (mp *memberProxy) Close() {
	mp.mu.Lock()
	if mp.closed {
		mp.mu.Unlock()
		return
	}
	mp.closed = true
	mp.ln.Close()
	for c := range mp.conns {
		c.Close()
	}
	if mp.fw != nil {
		mp.fw.stop()
		mp.fw = nil
	}
	mp.mu.Unlock()
	mp.wg.Wait()
}

// podUIDFunc reads a pod's current UID from the API server.
func (c *Cluster) podUIDFunc(pod string) func(ctx context.Context) (types.UID, error) {
	return func(ctx context.Context) (types.UID, error) {
		p, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("pod %s/%s: %w", c.ns, pod, err)
		}
		return p.UID, nil
	}
}
