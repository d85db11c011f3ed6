# shellcheck shell=bash disable=SC2154 # $here $root $work $stage: set by build.sh
# Sourced by build.sh: manifest.json, the payload's table of contents.
# Every file under bin/ and images/ is one part: name, kind (binary, link,
# image), path, version, sha256 and size (a link carries its target's).

# part_version NAME: the pinned version a part is built from.
part_version() {
	case $1 in
	kube | kube-* | kubelet | kubectl) echo "$KUBERNETES_VERSION" ;;
	etcd | etcdutl) echo "$ETCD_VERSION" ;;
	containerd | ctr | containerd-shim-runc-v2) echo "$CONTAINERD_VERSION" ;;
	runc) echo "$RUNC_VERSION" ;;
	crictl) echo "$CRICTL_VERSION" ;;
	cni/*) echo "$CNI_PLUGINS_VERSION" ;;
	images/pause.tar) echo "${PAUSE_IMAGE##*:}" ;;
	images/coredns.tar) echo "$COREDNS_VERSION" ;;
	images/metrics-server.tar) echo "$METRICS_SERVER_VERSION" ;;
	images/busybox.tar) echo "$BUSYBOX_DEB_VERSION" ;;
	*) die "manifest: no version known for $1" ;;
	esac
}

image_name() {
	case $1 in
	images/pause.tar) echo "$PAUSE_IMAGE" ;;
	images/coredns.tar) echo "$COREDNS_IMAGE" ;;
	images/metrics-server.tar) echo "$METRICS_SERVER_IMAGE" ;;
	images/busybox.tar) echo "$BUSYBOX_IMAGE" ;;
	esac
}

# write_manifest KEY: $stage/manifest.json.
write_manifest() {
	local key=$1 f rel name ver kind extra sum size sep=""
	local -A sums # real path -> sha256: hash each file once, not once per link
	{
		printf '{\n  "schema": 1,\n  "key": "%s",\n' "$key"
		printf '  "kubernetes_version": "%s",\n' "$KUBERNETES_VERSION"
		printf '  "arch": "%s",\n' "$ARCH"
		printf '  "go_version": "%s",\n  "parts": [' "$(go env GOVERSION)"
		while IFS= read -r rel; do
			f="$stage/$rel"
			name=${rel#bin/} extra=""
			ver=$(part_version "$name")
			if [[ -L $f ]]; then
				kind="link"
				extra=", \"target\": \"$(readlink "$f")\""
			elif [[ $rel == images/* ]]; then
				kind="image"
				extra=", \"image\": \"$(image_name "$rel")\""
				name=${rel#images/} name=${name%.tar}
			else
				kind="binary"
			fi
			f=$(realpath "$f")
			[[ -n ${sums[$f]:-} ]] || sums[$f]=$(sha256sum "$f" | cut -d' ' -f1)
			sum=${sums[$f]}
			size=$(stat -L -c %s "$f")
			printf '%s\n    {"name": "%s", "kind": "%s", "path": "%s", "version": "%s", "sha256": "%s", "size": %s%s}' \
				"$sep" "${name#cni/}" "$kind" "$rel" "$ver" "$sum" "$size" "$extra"
			sep=","
		done < <(cd "$stage" && find bin images -type f -o -type l | LC_ALL=C sort)
		printf '\n  ]\n}\n'
	} >"$stage/manifest.json"
}
