// Command cni is the CNI plugins we ship in one binary, installed as links
// named bridge, host-local, loopback, portmap, ...; it runs the plugin named
// by argv[0]'s basename (or by the first argument, for tests).
//
// Upstream plugin mains are `package main`, which Go cannot import, so the
// build copies each vendored plugin into ./internal/<name> as a package whose
// main is Main, and writes plugins_gen.go to register it (lib/gen-cni.sh).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// plugins maps a plugin name to its upstream main; filled by plugins_gen.go.
var plugins = map[string]func(){}

func main() {
	if run, ok := plugins[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	if len(os.Args) > 1 {
		if run, ok := plugins[os.Args[1]]; ok {
			os.Args = os.Args[1:]
			run()
			return
		}
	}
	names := make([]string, 0, len(plugins))
	for n := range plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: call through a link named after a plugin: %v\n", names)
	os.Exit(2)
}
