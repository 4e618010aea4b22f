package kube

import (
	"os"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
)

// DefaultValuesFiles are layered when CHART_VALUES is unset.
var DefaultValuesFiles = []string{"base.yaml", "3-replicas-ephemeral.yaml"}

// InstallOptionsFromEnv builds InstallOptions from the variables the suites
// and workflows use: CHART_REF, CHART_VERSION and CHART_VALUES (comma-
// separated names in charts/etcd-values).
func InstallOptionsFromEnv(namespace, release string) InstallOptions {
	o := InstallOptions{
		Namespace:    namespace,
		Release:      release,
		ChartRef:     os.Getenv("CHART_REF"),
		ChartVersion: os.Getenv("CHART_VERSION"),
		ValuesFiles:  DefaultValuesFiles,
	}
	if o.ChartVersion == "" {
		o.ChartVersion = chart.DefaultVersion
	}
	if v := os.Getenv("CHART_VALUES"); v != "" {
		o.ValuesFiles = nil
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				o.ValuesFiles = append(o.ValuesFiles, f)
			}
		}
	}
	return o
}
