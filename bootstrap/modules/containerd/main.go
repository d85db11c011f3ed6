// Command containerd is containerd and ctr in one binary, chosen by argv[0]'s
// basename (or the first argument: `containerd ctr images ls`). The shim is a
// separate, slim binary (./shim): one runs per pod, and it re-executes itself
// through os.Executable(), which a symlinked multicall would misread.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"

	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

func main() {
	ctx := context.Background()
	name := filepath.Base(os.Args[0])
	if name != "ctr" && len(os.Args) > 1 && os.Args[1] == "ctr" {
		name, os.Args = "ctr", os.Args[1:]
	}
	app := command.App()
	if name == "ctr" {
		app = ctrapp.New()
	}
	if err := app.Run(ctx, os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
