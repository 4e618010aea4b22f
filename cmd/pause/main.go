// Command pause is the process that holds a pod sandbox's namespaces on the
// kube-host backend, in place of registry.k8s.io/pause, which cannot be
// pulled there. pkg/image packs it (statically linked) into the pause
// image. It sleeps until SIGTERM or SIGINT and exits 0; as PID 1 of a pod
// that shares its process namespace it also reaps orphaned children, which
// would otherwise stay zombies.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("etcd-chaos pause")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
