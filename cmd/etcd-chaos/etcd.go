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
}

func runEtcd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("etcd", "etcd [--version v3.6.4] [--cache DIR]", stdout)
	version := fs.String("version", etcdbin.DefaultVersion, "etcd version (a tag of go.etcd.io/etcd/server/v3)")
	cache := fs.String("cache", "", "cache dir (default $"+etcdbin.CacheEnv+" or the user cache dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	path, err := etcdbin.Ensure(ctx, *version, *cache, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}
