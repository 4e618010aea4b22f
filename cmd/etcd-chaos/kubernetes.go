package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdchart"
	"github.com/etcd-chaos/etcd-chaos/pkg/image"
	"github.com/etcd-chaos/etcd-chaos/pkg/k8sbin"
)

func init() {
	commands["kubernetes"] = command{
		summary: "build (once) the Kubernetes, CoreDNS and crictl binaries, the etcd and pause images and the control plane's etcd that the kube-host backend runs",
		run:     runKubernetes,
	}
}

func runKubernetes(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("kubernetes", "kubernetes [--version "+k8sbin.DefaultVersion+"] [--cache DIR]", stdout)
	version := fs.String("version", k8sbin.DefaultVersion, "Kubernetes version (a tag of k8s.io/kubernetes)")
	cache := fs.String("cache", "", "cache dir (default $"+etcdbin.CacheEnv+" or the user cache dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	b, err := k8sbin.EnsureAll(ctx, *version, *cache, os.Stderr)
	if err != nil {
		return err
	}
	// Everything else a kube-host start builds on first use, so that no
	// test's timeout pays for an etcd build: the etcd image of every
	// charts/etcd release (one etcd build each; the newest is also the
	// control plane's etcd) and the pause image.
	if _, err := etcdchart.Prepare(ctx, *cache, os.Stderr); err != nil {
		return err
	}
	if _, err := etcdbin.Ensure(ctx, "", *cache, os.Stderr); err != nil {
		return err
	}
	if _, err := image.BuildPause(ctx, *cache); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	fmt.Fprintln(stdout, b.Dir)
	fmt.Fprintln(stdout, b.CoreDNS)
	fmt.Fprintln(stdout, b.Crictl)
	return nil
}
