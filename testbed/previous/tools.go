//go:build tools

// Package previous pins the Kubernetes binaries of the previous release the test bed builds (see
// ../install.sh: the machines of an AMI of that release carry them, for upgrade tests), so that
// `go mod tidy` keeps their dependencies in go.mod/go.sum.
package previous

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
)
