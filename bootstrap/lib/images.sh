# shellcheck shell=bash disable=SC2154 # $here $root $work $stage: set by build.sh
# Sourced by build.sh: the node images, written as OCI archives by imagetool.
# Needs: $here, $work, $stage, $K8S_CACHE_DIR; coredns and metrics-server built into $work/out.

imagetool() { "$work/out/imagetool" -arch "$ARCH" "$@"; }

# run_target CMD...: run one of $ARCH's programs on this host (qemu when cross-building).
run_target() {
	if [[ $ARCH == "$(go env GOHOSTARCH)" ]]; then "$@"; else "qemu-$GNU_ARCH-static" "$@"; fi
}

build_imagetool() {
	log "build: imagetool"
	(cd "$here/imagetool" && go build -trimpath -o "$work/out/imagetool" .)
}

# new_rootfs NAME: an empty rootfs dir for image NAME, printed.
new_rootfs() {
	local d="$work/rootfs/$1"
	rm -rf "$d" && mkdir -p "$d" && echo "$d"
}

# write_passwd DIR USER UID: minimal /etc/passwd and /etc/group.
write_passwd() {
	mkdir -p "$1/etc"
	printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s:%s:/nonexistent:/sbin/nologin\n' "$2" "$3" "$3" "$2" >"$1/etc/passwd"
	printf 'root:x:0:\n%s:x:%s:\n' "$2" "$3" >"$1/etc/group"
}

# image_pause: the sandbox image; static C, as upstream's build/pause.
image_pause() {
	local r; r=$(new_rootfs pause)
	log "image: $PAUSE_IMAGE"
	"$TARGET_CC" -static -Os -s -Wall -Wextra -DVERSION="\"${PAUSE_IMAGE##*:}\"" \
		-o "$r/pause" "$here/images/pause/pause.c"
	imagetool -name "$PAUSE_IMAGE" -rootfs "$r" -out "$stage/images/pause.tar" \
		-entrypoint '["/pause"]' -user 65535:65535
}

# image_coredns: as upstream's image: /coredns as nonroot with
# cap_net_bind_service on the file, so it binds :53 without running as root.
image_coredns() {
	local r; r=$(new_rootfs coredns)
	log "image: $COREDNS_IMAGE"
	install -m 0755 "$work/out/coredns" "$r/coredns"
	write_passwd "$r" nonroot 65532
	mkdir -m 1777 "$r/tmp"
	imagetool -name "$COREDNS_IMAGE" -rootfs "$r" -out "$stage/images/coredns.tar" \
		-entrypoint '["/coredns"]' -user 65532:65532 -workdir / \
		-expose 53/tcp -expose 53/udp -cap-net-bind /coredns
}

# image_metrics_server: /metrics-server as nonroot (upstream's is distroless
# static, which has no more than this: no shell, a passwd entry, /tmp).
image_metrics_server() {
	local r; r=$(new_rootfs metrics-server)
	log "image: $METRICS_SERVER_IMAGE"
	install -m 0755 "$work/out/metrics-server" "$r/metrics-server"
	write_passwd "$r" nonroot 65532
	mkdir -m 1777 "$r/tmp"
	imagetool -name "$METRICS_SERVER_IMAGE" -rootfs "$r" -out "$stage/images/metrics-server.tar" \
		-entrypoint '["/metrics-server"]' -user 65532:65532 -workdir /
}

# image_busybox: a shell and tools for tests, from Debian's busybox-static.
image_busybox() {
	local r deb x applet
	r=$(new_rootfs busybox)
	deb=$(fetch_deb "$BUSYBOX_DEB:$ARCH" "$K8S_CACHE_DIR/debs")
	BUSYBOX_DEB_VERSION=$(dpkg-deb -f "$deb" Version)
	log "image: $BUSYBOX_IMAGE (busybox-static $BUSYBOX_DEB_VERSION)"
	x="$work/rootfs/busybox-deb" && rm -rf "$x" && dpkg-deb -x "$deb" "$x"
	install -D -m 0755 "$x/bin/busybox" "$r/bin/busybox"
	install -D -m 0644 "$x/usr/share/doc/busybox-static/copyright" "$r/usr/share/doc/busybox-static/copyright"
	# One link per applet (sh, wget, nslookup, nc, httpd, ...), where busybox installs it.
	for applet in $(run_target "$r/bin/busybox" --list-full); do
		[[ $applet == bin/busybox ]] && continue
		mkdir -p "$r/$(dirname "$applet")"
		ln -sf /bin/busybox "$r/$applet"
	done
	write_passwd "$r" nobody 65534
	mkdir -m 0700 "$r/root"
	mkdir -m 1777 "$r/tmp"
	mkdir -p "$r/var/www" "$r/home"
	imagetool -name "$BUSYBOX_IMAGE" -rootfs "$r" -out "$stage/images/busybox.tar" -cmd '["sh"]'
}
