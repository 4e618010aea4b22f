package chart

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Selector is the label selector of a release's etcd pods.
func Selector(release string) string {
	s := "app.kubernetes.io/name=etcd,app.kubernetes.io/component=etcd"
	if release != "" {
		s += ",app.kubernetes.io/instance=" + release
	}
	return s
}

// NotReady describes the release's pods that are not Ready, one
// "pod: reason" per pod joined by "; ", or "" when all are Ready. With no
// pod at all it says so, since that usually means an image pull or
// scheduling problem on the StatefulSet.
func NotReady(ctx context.Context, cs kubernetes.Interface, namespace, release string) string {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: Selector(release)})
	if err != nil {
		return fmt.Sprintf("cannot list pods in %s: %v", namespace, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Sprintf("no pod matches %q in namespace %s (check the StatefulSet's events: kubectl -n %s describe statefulset)", Selector(release), namespace, namespace)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	var out []string
	for i := range pods.Items {
		if d := PodProblem(&pods.Items[i]); d != "" {
			out = append(out, pods.Items[i].Name+": "+d)
		}
	}
	return strings.Join(out, "; ")
}

// PodProblem says why a pod is not Ready, or "" if it is.
func PodProblem(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if ready {
		return ""
	}
	var parts []string
	parts = append(parts, "phase "+string(p.Status.Phase))
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			parts = append(parts, "unschedulable: "+c.Message)
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil:
			s := fmt.Sprintf("container %s waiting: %s", cs.Name, cs.State.Waiting.Reason)
			if cs.State.Waiting.Message != "" {
				s += " (" + cs.State.Waiting.Message + ")"
			}
			parts = append(parts, s)
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated: %s exit %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case cs.State.Running != nil && !cs.Ready:
			parts = append(parts, fmt.Sprintf("container %s running but not ready (restarts %d)", cs.Name, cs.RestartCount))
		}
		if cs.LastTerminationState.Terminated != nil && cs.RestartCount > 0 {
			parts = append(parts, fmt.Sprintf("last exit of %s: %s %d", cs.Name, cs.LastTerminationState.Terminated.Reason, cs.LastTerminationState.Terminated.ExitCode))
		}
	}
	return strings.Join(parts, ", ")
}
