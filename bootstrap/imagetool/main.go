// Command imagetool writes a one-layer container image as an OCI image
// layout tar (also loadable by `docker load`), from a root filesystem
// directory, so node images are made locally with no registry.
//
//	imagetool -name registry.k8s.io/pause:3.10.2 -rootfs DIR -out pause.tar \
//	    -entrypoint '["/pause"]' -user 65535:65535
//
// Output is deterministic: files sorted, owned by root, mtime 0.
// `ctr -n k8s.io images import pause.tar` picks the name from the
// io.containerd.image.name annotation.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var opts imageOptions
	var entrypoint, cmd string
	var env, ports listFlag
	flag.StringVar(&opts.Name, "name", "", "full image reference, e.g. registry.k8s.io/pause:3.10.2")
	flag.StringVar(&opts.Rootfs, "rootfs", "", "directory that becomes the image's only layer")
	out := flag.String("out", "", "output tar path")
	flag.StringVar(&opts.Arch, "arch", "amd64", "the rootfs's architecture, in Go's names (amd64, arm64)")
	flag.StringVar(&entrypoint, "entrypoint", "", `JSON array, e.g. ["/pause"]`)
	flag.StringVar(&cmd, "cmd", "", `JSON array, e.g. ["sh"]`)
	flag.Var(&env, "env", "KEY=VALUE (repeatable)")
	flag.Var(&ports, "expose", "port/proto, e.g. 53/udp (repeatable)")
	flag.StringVar(&opts.User, "user", "", "uid[:gid]")
	flag.StringVar(&opts.WorkingDir, "workdir", "", "working directory")
	flag.Var(&opts.BindCap, "cap-net-bind", "rootfs path given file capability cap_net_bind_service=+ep, like upstream's setcap (repeatable)")
	flag.Parse()
	if opts.Name == "" || opts.Rootfs == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	opts.Env, opts.ExposedPorts = env, ports
	for _, a := range []struct {
		src string
		dst *[]string
	}{{entrypoint, &opts.Entrypoint}, {cmd, &opts.Cmd}} {
		if a.src == "" {
			continue
		}
		if err := json.Unmarshal([]byte(a.src), a.dst); err != nil {
			fatal(fmt.Errorf("-entrypoint/-cmd %q: want a JSON array of strings: %w", a.src, err))
		}
	}
	if err := writeImage(*out, opts); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "imagetool:", err)
	os.Exit(1)
}
