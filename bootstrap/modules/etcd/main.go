// Command etcd is the upstream etcd server (etcd's own main.go), for HA mode.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
