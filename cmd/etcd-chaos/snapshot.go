package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/snapshot"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func init() {
	commands["snapshot"] = command{
		summary: "save, verify, and restore-check etcd snapshots",
		run:     runSnapshot,
	}
}

const snapshotUsage = `snapshot <save|verify|restore-check> ...

  snapshot save --endpoints URL[,URL] [--user U --password P] [--from leader|follower|NAME] OUT.db
  snapshot verify FILE.db
  snapshot restore-check FILE.db [--members 3] [--etcd-version v3.6.4 | --etcd-binary PATH]`

func runSnapshot(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr("missing subcommand: want save, verify or restore-check")
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(ctx, args[1:], stdout)
	case "verify":
		return runSnapshotVerify(args[1:], stdout)
	case "restore-check":
		return runSnapshotRestoreCheck(ctx, args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprintf(stdout, "Usage: etcd-chaos %s\n", snapshotUsage)
		return flag.ErrHelp
	}
	return usageErr("unknown subcommand %q: want save, verify or restore-check", args[0])
}

// parseInterleaved parses flags that may come before or after positional
// arguments, as users type them in either order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func oneFile(pos []string, what string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usageErr("missing %s", what)
	case len(pos) > 1:
		return "", usageErr("want one %s, got %d arguments: %s", what, len(pos), strings.Join(pos, " "))
	}
	return pos[0], nil
}

func runSnapshotSave(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("snapshot save", "snapshot save --endpoints URL[,URL] [--user U --password P] [--from leader|follower|NAME] OUT.db", stdout)
	endpoints := fs.String("endpoints", "", "comma-separated client URLs of the cluster (required)")
	user := fs.String("user", "", "user name, when auth is enabled")
	password := fs.String("password", "", "password for --user (default $ETCD_PASSWORD)")
	from := fs.String("from", "", `member to stream from: "leader", "follower" or a member name (default: the only endpoint, or the leader)`)
	cacert := fs.String("cacert", "", "CA bundle to verify the server (TLS)")
	cert := fs.String("cert", "", "client certificate (TLS)")
	key := fs.String("key", "", "client key (TLS)")
	insecure := fs.Bool("insecure-skip-tls-verify", false, "do not verify the server certificate")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	asJSON := fs.Bool("json", false, "print the snapshot info as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	out, err := oneFile(pos, "output file (OUT.db)")
	if err != nil {
		return err
	}
	if *endpoints == "" {
		return usageErr("--endpoints is required, e.g. --endpoints http://127.0.0.1:2379")
	}
	eps := strings.Split(*endpoints, ",")
	if *password == "" {
		*password = os.Getenv("ETCD_PASSWORD")
	}
	if *user != "" && *password == "" {
		return usageErr("--user %s needs --password (or $ETCD_PASSWORD)", *user)
	}
	cfg := clientv3.Config{Endpoints: eps, Username: *user, Password: *password, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if *cacert != "" || *cert != "" || *key != "" || *insecure {
		tlsInfo := transport.TLSInfo{TrustedCAFile: *cacert, CertFile: *cert, KeyFile: *key, InsecureSkipVerify: *insecure}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return fmt.Errorf("TLS settings: %w", err)
		}
		cfg.TLS = tc
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg.Context = ctx
	cli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *endpoints, err)
	}
	defer cli.Close()
	ep, name, role, err := pickEndpoint(ctx, cli, eps, *from)
	if err != nil {
		return err
	}
	info, err := snapshot.Save(ctx, cli, ep, out)
	if err != nil {
		return err
	}
	info.MemberName, info.Role = name, role
	return printInfo(stdout, info, *asJSON)
}

// pickEndpoint resolves --from against the user's endpoints, asking each for
// its status; the cluster's member list supplies names.
func pickEndpoint(ctx context.Context, cli *clientv3.Client, eps []string, from string) (ep, name, role string, err error) {
	if from == "" && len(eps) == 1 {
		return eps[0], "", "", nil
	}
	if from == "" {
		from = "leader"
	}
	names := map[uint64]string{}
	if ml, err := cli.MemberList(ctx); err == nil {
		for _, m := range ml.Members {
			names[m.ID] = m.Name
		}
	}
	var errs []string
	for _, e := range eps {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(sctx, e)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", e, err))
			continue
		}
		id := st.Header.MemberId
		isLeader := st.Leader == id
		switch {
		case from == "leader" && isLeader, from == "follower" && !isLeader && st.Leader != 0:
			return e, names[id], from, nil
		case from != "leader" && from != "follower" && names[id] == from:
			return e, from, "", nil
		}
	}
	detail := ""
	if len(errs) > 0 {
		detail = " (" + strings.Join(errs, "; ") + ")"
	}
	switch from {
	case "leader", "follower":
		return "", "", "", fmt.Errorf("no %s among endpoints %s%s; pass the endpoint of every member", from, strings.Join(eps, ","), detail)
	}
	return "", "", "", fmt.Errorf("no member named %q among endpoints %s%s", from, strings.Join(eps, ","), detail)
}

func printInfo(w io.Writer, info snapshot.Info, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(w, "snapshot:  %s\n", info.Path)
	if info.Member != "" {
		from := info.Member
		if info.MemberName != "" {
			from = info.MemberName + " (" + info.Member + ")"
		}
		if info.Role != "" {
			from += ", " + info.Role
		}
		fmt.Fprintf(w, "from:      %s\n", from)
	}
	fmt.Fprintf(w, "revision:  %d\n", info.Revision)
	fmt.Fprintf(w, "keys:      %d\n", info.TotalKeys)
	fmt.Fprintf(w, "size:      %d bytes\n", info.Size)
	fmt.Fprintf(w, "sha256:    %s\n", info.SHA256)
	fmt.Fprintf(w, "hash:      %d\n", info.Hash)
	if info.StorageVersion != "" {
		fmt.Fprintf(w, "storage:   %s\n", info.StorageVersion)
	}
	if info.Duration > 0 {
		fmt.Fprintf(w, "took:      %s\n", info.Duration.Round(time.Millisecond))
	}
	return nil
}

func runSnapshotVerify(args []string, stdout io.Writer) error {
	fs := newFlagSet("snapshot verify", "snapshot verify [--json] FILE.db", stdout)
	asJSON := fs.Bool("json", false, "print the snapshot info as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	path, err := oneFile(pos, "snapshot file (FILE.db)")
	if err != nil {
		return err
	}
	info, err := snapshot.Verify(path)
	if err != nil {
		return err
	}
	if err := printInfo(stdout, info, *asJSON); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "verified:  ok (sha256 trailer matches; bolt consistency check passed)")
	return nil
}

func runSnapshotRestoreCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("snapshot restore-check", "snapshot restore-check FILE.db [--members 3] [--etcd-version v3.6.4 | --etcd-binary PATH]", stdout)
	members := fs.Int("members", 3, "members of the restored cluster")
	version := fs.String("etcd-version", etcdbin.DefaultVersion, "etcd version to restore into (built once and cached)")
	binary := fs.String("etcd-binary", "", "etcd binary to restore into (instead of --etcd-version)")
	cache := fs.String("cache", "", "cache dir for built etcd binaries (default $"+etcdbin.CacheEnv+" or the user cache dir)")
	logs := fs.String("logs", "", "keep the restored members' logs in this dir")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	path, err := oneFile(pos, "snapshot file (FILE.db)")
	if err != nil {
		return err
	}
	if *members < 1 {
		return usageErr("--members must be at least 1, got %d", *members)
	}
	versionSet := false
	fs.Visit(func(f *flag.Flag) { versionSet = versionSet || f.Name == "etcd-version" })
	if versionSet && *binary != "" {
		return usageErr("give --etcd-version or --etcd-binary, not both")
	}
	// Verify before building or starting anything: a bad file is the
	// answer, and it must come fast.
	info, err := snapshot.Verify(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	opts := []snapshot.RestoreOption{snapshot.WithCacheDir(*cache), snapshot.WithProgress(os.Stderr)}
	if *binary != "" {
		opts = append(opts, snapshot.WithEtcdBinary(*binary))
	} else {
		opts = append(opts, snapshot.WithEtcdVersion(*version))
	}
	if *logs != "" {
		opts = append(opts, snapshot.WithArtifactDir(*logs))
	}
	start := time.Now()
	c, err := snapshot.Restore(ctx, path, *members, opts...)
	if err != nil {
		return err
	}
	// Close with a context of its own so Ctrl-C still stops every member.
	defer c.Close(context.WithoutCancel(ctx))
	restored := time.Since(start)
	checks := snapshot.CheckRestored(ctx, c, nil, info)
	fmt.Fprintf(stdout, "snapshot:  %s (revision %d, %d keys, sha256 %s)\n", path, info.Revision, info.TotalKeys, info.SHA256)
	fmt.Fprintf(stdout, "restored:  %d-member cluster in %s\n", *members, restored.Round(time.Millisecond))
	for _, ch := range checks {
		fmt.Fprintf(stdout, "%-17s %s: %s\n", ch.Name, ch.Status, ch.Summary)
		for _, v := range ch.Violations {
			fmt.Fprintf(stdout, "  - %s\n", v)
		}
	}
	if !verdict.Passed(checks) {
		var names []string
		for _, ch := range verdict.Failed(checks) {
			names = append(names, ch.Name)
		}
		return fmt.Errorf("%w: %s", errChecksFailed, strings.Join(names, ", "))
	}
	return nil
}
