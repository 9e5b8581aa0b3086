// Command etcdctl is the upstream etcd client CLI, built from go.etcd.io/etcd/etcdctl/v3 at the
// etcd server's version. Machines carry it (capflow removes etcd members with `etcdctl member list`
// and `member remove`).
package main

import (
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
)

func main() {
	ctlv3.MustStart()
}
