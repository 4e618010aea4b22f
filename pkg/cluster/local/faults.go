package local

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var errClosed = errors.New("local cluster is closed")

// running returns the member if its process is up.
func (c *Cluster) running(name string) (*member, error) {
	m, err := c.member(name)
	if err != nil {
		return nil, err
	}
	if c.closed {
		return nil, errClosed
	}
	if m.proc == nil || m.proc.done() {
		return nil, fmt.Errorf("%s is not running (Restart it first)", name)
	}
	return m, nil
}

// Kill sends SIGKILL to the member's process group and waits for it to die.
// Killing a member that is already down is a no-op.
func (c *Cluster) Kill(ctx context.Context, member string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.member(member)
	if err != nil {
		return err
	}
	if c.closed {
		return errClosed
	}
	m.stop(ctx, syscall.SIGKILL, 0)
	m.paused = false
	return nil
}

// Restart starts a killed member again with the same data dir and flags and
// waits until it serves client requests (it need not have a leader: a
// member restarted inside a partition serves, but cannot find one). On a
// running member it only waits, and if that member exits meanwhile (a
// crash racing the heal, such as a failpoint panic that fired just before
// it) it is started again.
func (c *Cluster) Restart(ctx context.Context, member string) error {
	for {
		c.mu.Lock()
		m, err := c.member(member)
		if err == nil && c.closed {
			err = errClosed
		}
		started := false
		if err == nil && (m.proc == nil || m.proc.done()) {
			// Same ports if still free; a clash is retried by exitReport.
			m.clashes = 0
			err = c.startMemberLocked(m, false)
			started = true
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		err = c.waitServing(ctx, m)
		if err == nil || started || ctx.Err() != nil {
			return err
		}
	}
}

// waitServing polls the member's own client port, bypassing its proxy so
// that a client isolation does not hide a healthy process.
func (c *Cluster) waitServing(ctx context.Context, m *member) error {
	var last error
	for {
		if err := c.exitReport(m); err != nil {
			return err
		}
		c.mu.Lock()
		url := "http://" + m.realClient
		c.mu.Unlock()
		last = statusOnce(ctx, url, c.creds)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not serve after restart: %v (log: %s)", m.name, last, m.logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func statusOnce(ctx context.Context, url string, creds cluster.Credentials) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{url},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
		// Status needs authentication when auth is on (etcd 3.6).
		Username: creds.Username,
		Password: creds.Password,
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = cli.Status(sctx, url)
	return err
}

// Pause freezes the member with SIGSTOP.
func (c *Cluster) Pause(ctx context.Context, member string) error {
	return c.signal(member, syscall.SIGSTOP, true)
}

// Resume thaws a paused member with SIGCONT.
func (c *Cluster) Resume(ctx context.Context, member string) error {
	return c.signal(member, syscall.SIGCONT, false)
}

func (c *Cluster) signal(member string, sig syscall.Signal, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.running(member)
	if err != nil {
		return err
	}
	if err := syscall.Kill(-m.proc.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("cannot send %v to %s: %w", sig, member, err)
	}
	m.paused = paused
	return nil
}

// Cut drops all peer traffic between members a and b, open connections
// included. Client traffic stays up: clients reaching a minority member is
// exactly what a Jepsen-style partition tests.
func (c *Cluster) Cut(ctx context.Context, a, b string) error {
	if _, err := c.member(a); err != nil {
		return err
	}
	if _, err := c.member(b); err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("cannot cut %s from itself", a)
	}
	c.net.Cut(a, b)
	return nil
}

// IsolateClient drops all client traffic to member, open connections
// included, until Heal.
func (c *Cluster) IsolateClient(ctx context.Context, member string) error {
	if _, err := c.member(member); err != nil {
		return err
	}
	c.net.IsolateClient(member)
	return nil
}

// Degrade delays what member sends to its peers by latency and holds back a
// fraction loss of it by a retransmission timeout (see faultproxy.LossRTO).
func (c *Cluster) Degrade(ctx context.Context, member string, latency time.Duration, loss float64) error {
	if _, err := c.member(member); err != nil {
		return err
	}
	return c.net.Degrade(member, latency, loss)
}

// Heal removes every cut, client isolation and degradation.
func (c *Cluster) Heal(ctx context.Context) error {
	c.net.Heal()
	return nil
}
