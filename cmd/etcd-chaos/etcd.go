package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

func init() {
	commands["etcd"] = command{
		summary: "build (once) and print the path of the etcd server binary for a version",
		run:     runEtcd,
	}
	commands["failpoints"] = command{
		summary: "build (once) the failpoint-enabled etcd of a version and list its failpoints",
		run:     runFailpoints,
	}
}

func runEtcd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("etcd", "etcd [--version v3.6.4] [--failpoints] [--cache DIR]", stdout)
	version := fs.String("version", etcdbin.DefaultVersion, "etcd version (a tag of go.etcd.io/etcd/server/v3)")
	failpoints := fs.Bool("failpoints", false, "the build with gofail failpoints enabled (cached apart from the plain one)")
	cache := fs.String("cache", "", "cache dir (default $"+etcdbin.CacheEnv+" or the user cache dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	ensure := etcdbin.Ensure
	if *failpoints {
		ensure = etcdbin.EnsureFailpoints
	}
	path, err := ensure(ctx, *version, *cache, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}

func runFailpoints(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("failpoints", "failpoints [--etcd-version v3.6.4] [--cache DIR]", stdout)
	version := fs.String("etcd-version", etcdbin.DefaultVersion, "etcd version whose failpoint build to list (built once if missing)")
	cache := fs.String("cache", "", "cache dir (default $"+etcdbin.CacheEnv+" or the user cache dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	path, err := etcdbin.EnsureFailpoints(ctx, *version, *cache, os.Stderr)
	if err != nil {
		return err
	}
	names, err := etcdbin.Failpoints(path)
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return nil
}
