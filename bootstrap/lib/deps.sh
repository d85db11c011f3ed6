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
# patch for patches/, zstd for the payload archive; for another ARCH, Debian's
# cross gcc and that arch's libseccomp (multiarch: the arch is added to dpkg).
host_deps() {
	apt_install gcc libc6-dev libseccomp-dev pkg-config patch zstd
	[[ $ARCH == "$(go env GOHOSTARCH)" ]] && return 0
	if ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
		need_root "dpkg --add-architecture $ARCH"
		log "dpkg --add-architecture $ARCH"
		dpkg --add-architecture "$ARCH"
		apt_updated=
	fi
	# qemu runs the arch's busybox once, to list its applets.
	apt_install "gcc-$GNU_ARCH-linux-gnu" "libc6-dev-$ARCH-cross" "libseccomp-dev:$ARCH" qemu-user-static
}

# fetch_deb PKG[:ARCH] DIR: the .deb of PKG (candidate version) into DIR, kept across builds.
fetch_deb() {
	local pkg=$1 dir=$2 ver deb arch=${1#*:}
	[[ $arch == "$pkg" ]] && arch=$(dpkg --print-architecture)
	ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if [[ -z $ver || $ver == "(none)" ]]; then
		apt_update
		ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
	fi
	[[ -n $ver && $ver != "(none)" ]] || die "apt has no candidate for $pkg"
	mkdir -p "$dir"
	deb="$dir/${pkg%%:*}_${ver//:/%3a}_$arch.deb" # apt writes the epoch colon as %3a
	if [[ ! -f $deb ]]; then
		log "apt-get download $pkg=$ver"
		(cd "$dir" && apt-get -o APT::Sandbox::User=root download "$pkg=$ver" >&2) || die "apt-get download $pkg failed"
		[[ -f $deb ]] || die "apt-get download $pkg=$ver wrote no $deb"
	fi
	echo "$deb"
}
