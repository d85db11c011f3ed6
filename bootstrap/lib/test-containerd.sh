# Sourced by test-payload.sh (not part of the cache key): run the payload's
# containerd in a temp dir, import the images and run containers; leave
# nothing behind. Uses check/has/ok/bad and versions.env from test-payload.sh.
# shellcheck disable=SC2016 # $(...) in single quotes runs inside the container

containerd_smoke() {
	local P=$1 T pid cg had_cg=() i
	T=$(mktemp -d /tmp/k8s-ctd.XXXXXX)
	# containerd puts containers in /<namespace> cgroups (v1); remove those it creates.
	for cg in /sys/fs/cgroup/*/k8s.io; do [[ -d $cg ]] && had_cg+=("$cg"); done
	cat >"$T/config.toml" <<-EOT
		version = 3
		root = "$T/root"
		state = "$T/state"
		[grpc]
		  address = "$T/sock"
	EOT
	PATH="$P/bin:$PATH" "$P/bin/containerd" --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
	pid=$!
	local ctr=("$P/bin/ctr" --address "$T/sock" -n k8s.io)
	for i in $(seq 50); do [[ -S $T/sock ]] && break; sleep 0.2; done
	check "containerd starts" "${ctr[@]}" version
	for i in pause coredns metrics-server busybox; do
		check "ctr images import $i.tar" "${ctr[@]}" images import "$P/images/$i.tar"
	done
	has "image $PAUSE_IMAGE listed" "$PAUSE_IMAGE" "${ctr[@]}" images ls -q
	has "image $COREDNS_IMAGE listed" "$COREDNS_IMAGE" "${ctr[@]}" images ls -q
	has "image $METRICS_SERVER_IMAGE listed" "$METRICS_SERVER_IMAGE" "${ctr[@]}" images ls -q
	has "image $BUSYBOX_IMAGE listed" "$BUSYBOX_IMAGE" "${ctr[@]}" images ls -q
	has "busybox runs (shim+runc)" "hello 0 /usr/bin/wget" env PATH="$P/bin:$PATH" \
		"${ctr[@]}" run --rm "$BUSYBOX_IMAGE" smoke-bb sh -c 'echo hello $(id -u) $(which wget)'
	has "coredns image runs" "CoreDNS-${COREDNS_VERSION#v}" env PATH="$P/bin:$PATH" \
		"${ctr[@]}" run --rm "$COREDNS_IMAGE" smoke-dns /coredns -version
	# Upstream's image runs as uid 65532 and binds :53 through a file capability.
	PATH="$P/bin:$PATH" "${ctr[@]}" run -d --log-uri "file://$T/dns.log" "$COREDNS_IMAGE" smoke-dns2 >/dev/null 2>&1
	for i in $(seq 25); do grep -q '^\.:53' "$T/dns.log" 2>/dev/null && break; sleep 0.2; done
	local dns_pid
	dns_pid=$("${ctr[@]}" task ls 2>/dev/null | awk '$1 == "smoke-dns2" {print $2}')
	has "coredns listens on :53" ".:53" cat "$T/dns.log"
	has "coredns runs as uid 65532" "65532" ps -o uid= -p "${dns_pid:-0}"
	"${ctr[@]}" task kill -s SIGKILL smoke-dns2 >/dev/null 2>&1
	for i in $(seq 25); do "${ctr[@]}" task rm smoke-dns2 >/dev/null 2>&1 && break; sleep 0.2; done
	"${ctr[@]}" container rm smoke-dns2 >/dev/null 2>&1
	# Upstream's image test: `--version` prints the release tag.
	has "metrics-server image runs" "$METRICS_SERVER_VERSION" env PATH="$P/bin:$PATH" \
		"${ctr[@]}" run --rm "$METRICS_SERVER_IMAGE" smoke-ms /metrics-server --version
	has "pause image runs" "pause.c" env PATH="$P/bin:$PATH" \
		"${ctr[@]}" run --rm "$PAUSE_IMAGE" smoke-pause /pause -v
	kill "$pid"
	wait "$pid" 2>/dev/null
	if grep -q "$T" /proc/mounts; then bad "mounts left under $T"; else rm -rf "$T"; fi
	for cg in /sys/fs/cgroup/*/k8s.io; do
		[[ -d $cg && " ${had_cg[*]} " != *" $cg "* ]] && rmdir "$cg" 2>/dev/null
	done
	return 0
}
