# shellcheck shell=bash
# Sourced by build.sh: host packages the build needs, installed only if missing.

apt_updated=
apt_install() { # apt_install PKG...: install those not yet installed
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	need_root "apt-get install ${missing[*]}"
	apt_update
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

apt_update() {
	[[ -n $apt_updated ]] && return 0
	apt-get update -qq >&2 || die "apt-get update failed"
	apt_updated=1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "$1 needs root (or install it yourself first)"
}

# host_deps: gcc for pause and runc (cgo), static libseccomp for runc,
# patch for patches/, zstd for the payload archive.
host_deps() {
	command -v go >/dev/null || die "go not found (Go >= $GO_LANG_VERSION is needed)"
	apt_install gcc libc6-dev libseccomp-dev pkg-config patch zstd
}

# fetch_deb PKG DIR: the .deb of PKG (candidate version) into DIR, kept across builds.
fetch_deb() {
	local pkg=$1 dir=$2 ver deb
	ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if [[ -z $ver || $ver == "(none)" ]]; then
		apt_update
		ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
	fi
	[[ -n $ver && $ver != "(none)" ]] || die "apt has no candidate for $pkg"
	mkdir -p "$dir"
	local prefix="$dir/${pkg}_${ver//:/%3a}_" # apt writes the epoch colon as %3a
	deb=$(compgen -G "$prefix*.deb" | head -n1 || true)
	if [[ -z $deb ]]; then
		log "apt-get download $pkg=$ver"
		(cd "$dir" && apt-get -o APT::Sandbox::User=root download "$pkg=$ver" >&2) || die "apt-get download $pkg failed"
		deb=$(compgen -G "$prefix*.deb" | head -n1)
	fi
	echo "$deb"
}
