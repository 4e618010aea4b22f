// Command etcd-member is the entrypoint of the etcd image the kube-host
// backend runs (pkg/image.BuildEtcd, charts/etcd). It does, in Go, what the
// Bitnami image's scripts do as far as a client can observe, then execs
// etcd so that etcd is the container's main process (the harness kills and
// pauses that pid):
//
//   - It reads etcd's own ETCD_* variables, which the chart sets:
//     ETCD_NAME (the pod name), ETCD_DATA_DIR, ETCD_INITIAL_CLUSTER (every
//     StatefulSet ordinal's peer URL on the headless Service),
//     ETCD_INITIAL_ADVERTISE_PEER_URLS, ETCD_ADVERTISE_CLIENT_URLS and
//     ETCD_LISTEN_CLIENT_URLS, plus ETCD_ROOT_PASSWORD (from the chart's
//     Secret; empty means no authentication).
//   - Empty data dir, and another member answers a linearizable read: the
//     cluster exists. A stale entry for this member (it ran before, then
//     lost its data with its emptyDir) is removed and the member is added
//     again with a new ID; etcd itself refuses both while too few other
//     members are started, so it waits until they are.
//   - Empty data dir and no member answers: a NEW cluster is bootstrapped
//     from ETCD_INITIAL_CLUSTER. Deleting every pod of a release without
//     persistence therefore loses all data, as with the Bitnami chart. On
//     that first bootstrap etcd runs in the background until the cluster
//     has a leader, RBAC is enabled (user root, the Secret's password,
//     role root), and etcd is stopped and exec'd in the foreground.
//   - Existing data dir: etcd just starts, unless a healthy cluster no
//     longer lists this member (it was removed): then the data is wiped
//     and the member re-added.
//
// `etcd-member probe` is the readiness, liveness and startup probe: a
// linearizable read of key "health" through the local client URL as root,
// like `etcdctl endpoint health`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "probe":
		os.Exit(probeCmd(os.Args[2:]))
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "etcd-member: unknown command %q\n", os.Args[1])
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: etcd-member run [--etcd PATH] [--bootstrap-timeout D] [--settle D] | etcd-member probe [--timeout D]")
	os.Exit(2)
}

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	etcdBin := fs.String("etcd", "/usr/local/bin/etcd", "etcd server binary to exec")
	bootTimeout := fs.Duration("bootstrap-timeout", 3*time.Minute, "how long a new cluster may take to elect a leader before the attempt is wiped and the container exits")
	settle := fs.Duration("settle", 30*time.Second, "how long to wait for an established cluster without a leader before bootstrapping a new one")
	_ = fs.Parse(args) // ExitOnError: a bad flag exits 2 with usage

	cfg, err := configFromEnv(os.Environ())
	if err != nil {
		logf("%v", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m := &member{cfg: cfg, etcdBin: *etcdBin, bootstrapTimeout: *bootTimeout, settle: *settle, logf: logf}
	env, err := m.prepare(ctx)
	if err != nil {
		logf("%v", err)
		return 1
	}
	stop()
	logf("starting etcd %s as %s (initial cluster state %s)", *etcdBin, cfg.name, envValue(env, "ETCD_INITIAL_CLUSTER_STATE"))
	// Exec, not a child: etcd must be the container's main process.
	err = syscall.Exec(*etcdBin, []string{*etcdBin}, env)
	logf("exec %s: %v", *etcdBin, err)
	return 1
}

func probeCmd(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	_ = fs.Parse(args) // ExitOnError: a bad flag exits 2 with usage
	cfg, err := configFromEnv(os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := probe(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "unhealthy: %v\n", err)
		return 1
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s etcd-member: %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}
