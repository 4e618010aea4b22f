package chart

import helmchart "helm.sh/helm/v3/pkg/chart"

type loadedChart struct {
	ch   *helmchart.Chart
	path string
}
