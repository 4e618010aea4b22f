package kind

import "os"

// OptionsFromEnv reads KIND_NODE_IMAGE and KEEP_CLUSTER=1, the variables the
// workflows set.
func OptionsFromEnv() []Option {
	opts := []Option{WithKeepCluster(os.Getenv("KEEP_CLUSTER") == "1")}
	if img := os.Getenv("KIND_NODE_IMAGE"); img != "" {
		opts = append(opts, WithNodeImage(img))
	}
	return opts
}

// ClusterNameFromEnv is KIND_CLUSTER_NAME, or DefaultClusterName.
func ClusterNameFromEnv() string {
	if n := os.Getenv("KIND_CLUSTER_NAME"); n != "" {
		return n
	}
	return DefaultClusterName
}
