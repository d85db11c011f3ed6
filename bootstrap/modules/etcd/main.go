// Command etcd is the upstream etcd server (etcd's own main.go), for HA
// mode, and, called as etcdutl, etcd's offline tool (its own command tree):
// k8s restores snapshots with `etcdutl snapshot restore`.
package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/pkg/v3/cobrautl"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	if filepath.Base(os.Args[0]) == "etcdutl" {
		if err := etcdutlCommand().Execute(); err != nil {
			cobrautl.ExitWithError(cobrautl.ExitError, err)
		}
		return
	}
	etcdmain.Main(os.Args)
}

// etcdutlCommand is etcdutl's root command as upstream's ctl.go builds it.
func etcdutlCommand() *cobra.Command {
	root := &cobra.Command{Use: "etcdutl", Short: "An administrative command line tool for etcd3."}
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(
		etcdutl.NewDefragCommand(),
		etcdutl.NewSnapshotCommand(),
		etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(),
		etcdutl.NewMigrateCommand(),
	)
	root.SetHelpTemplate(`{{.UsageString}}`)
	return root
}
