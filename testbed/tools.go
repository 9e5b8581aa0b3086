//go:build tools

// Package testbed pins the Kubernetes binaries the test bed builds (see install.sh), so that
// `go mod tidy` keeps their dependencies in go.mod/go.sum.
package testbed

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
