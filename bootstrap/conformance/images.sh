# shellcheck shell=bash disable=SC2154 # $work $stage $K8S_CACHE_DIR $KUBERNETES_SRC $ETCD_VERSION: set by build.sh
# Sourced by bootstrap/conformance/build.sh: the images upstream's e2e suite
# pulls, made here with no registry: from the pinned Kubernetes module's
# sources (test/images/*), the Go programs build.sh put in $work/out (agnhost,
# nnp, sample-apiserver), etcd of the payload's pin, and Debian bookworm
# packages. Each image is one OCI archive written by bootstrap/imagetool,
# under the exact name the suite asks for; $stage/images.txt lists them and
# every other image `e2e.test --list-images` names, with why it is missing.
#
# Needs: $work, $stage, $K8S_CACHE_DIR, $KUBERNETES_SRC, $ETCD_VERSION, and the
# functions log, die, imagetool and deps.sh's fetch_deb, apt_install, need_root. Root, for
# mmdebstrap (installed with apt-get when missing). See README.md "## Images".
#
# Debian root filesystems come from mmdebstrap (minbase + the image's packages,
# no recommends, no docs but copyright files, no man pages or locales), the
# apt sources of this machine (its bookworm mirror and security updates),
# stripped of what a container gets from its runtime (/dev, /proc, hostname,
# resolv.conf) and cached as one tarball per package list:
#   $K8S_CACHE_DIR/conformance-cache/rootfs-<flavor>-<key>.tar
#   $K8S_CACHE_DIR/conformance-cache/debs/*.deb     every .deb downloaded
#   $K8S_CACHE_DIR/conformance-cache/images/<archive>-<key>.tar  (conf_write)
# A rootfs <key> covers the package list, the apt sources and the functions
# that build and strip the tree; delete a tarball to pick up newer Debian
# updates. Cold: ~4 min (4 mmdebstrap runs); warm: ~20 s (README.md).

conf_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf_boot=$(dirname "$conf_here")
conf_built=() # "<ref> <archive>" of each image written by this run

# conf_ref ID: the reference test/utils/image/manifest.go gives image ID
# (e.g. Agnhost -> registry.k8s.io/e2e-test-images/agnhost:2.66.1), so the
# names follow the pinned module.
conf_ref() {
	local f="$KUBERNETES_SRC/test/utils/image/manifest.go" line reg host
	line=$(grep -E "^\s*configs\[$1\] = Config\{" "$f") || die "no image $1 in $f"
	[[ $line =~ Config\{list\.([A-Za-z0-9]+),\ \"([^\"]+)\",\ \"([^\"]+)\"\} ]] ||
		die "cannot read image $1 in $f: $line"
	reg=${BASH_REMATCH[1]}
	host=$(sed -n -E "s/^\s*$reg:\s*\"([^\"]+)\",.*/\1/p" "$f" | head -n1)
	[[ -n $host ]] || die "no registry $reg in $f"
	echo "$host/${BASH_REMATCH[2]}:${BASH_REMATCH[3]}"
}

# conf_write REF ARCHIVE IMAGETOOL-ARGS...: the image of the tree $rootfs (set
# by the caller), recorded for images.txt. imagetool's output is a function of
# the tree (paths, modes, contents: it drops owners and times), its arguments
# and its own binary, so an archive made from the same three is reused from
# $K8S_CACHE_DIR/conformance-cache/images/ instead of compressed again.
conf_write() {
	local ref=$1 tar=$2 dir key cached
	shift 2
	dir="$(conf_cache_dir)/images"
	key=$({
		printf '%s\n' "$ref" "$@"
		sha256sum <"$work/out/imagetool"
		tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf - . | sha256sum
	} | sha256sum | cut -c1-16)
	cached="$dir/${tar%.tar}-$key.tar"
	if [[ -f $cached ]]; then
		log "image: $ref (cached $(basename "$cached"))"
		cp "$cached" "$stage/images/$tar"
	else
		log "image: $ref"
		imagetool -name "$ref" -rootfs "$rootfs" -out "$stage/images/$tar" "$@"
		mkdir -p "$dir"
		rm -f "$dir/${tar%.tar}-"*.tar
		cp "$stage/images/$tar" "$cached.tmp" && mv "$cached.tmp" "$cached"
	fi
	conf_built+=("$ref $tar")
}

# --- Debian root filesystems ------------------------------------------------

conf_cache_dir() { echo "$K8S_CACHE_DIR/conformance-cache"; }

# conf_sources: the apt sources file mmdebstrap pastes into the tree: this
# machine's deb822 sources when they are bookworm's, else deb.debian.org.
conf_sources() {
	local f=/etc/apt/sources.list.d/debian.sources
	if [[ -f $f ]] && grep -qE '^Suites:.*\bbookworm\b' "$f"; then
		echo "$f"
		return
	fi
	f="$work/debian-bookworm.sources"
	cat >"$f" <<-'EOF'
		Types: deb
		URIs: http://deb.debian.org/debian
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: http://deb.debian.org/debian-security
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	echo "$f"
}

# conf_mmdebstrap DIR SOURCES PKG...: Debian bookworm minbase + PKGs into DIR
# (merged /usr, as Debian's own images), reusing and adding to the .deb cache.
conf_mmdebstrap() {
	local dir=$1 sources=$2 debs include
	shift 2
	debs="$(conf_cache_dir)/debs"
	mkdir -p "$debs"
	include=$(IFS=,; echo "$*")
	mmdebstrap --mode=root --variant=minbase --format=directory \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		${include:+"--include=$include"} \
		--aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
		--dpkgopt=force-unsafe-io \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--skip=essential/unlink \
		--setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && find $(printf %q "$debs") -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives\" {} +" \
		--customize-hook="cp -n \"\$1\"/var/cache/apt/archives/*.deb $(printf %q "$debs")/" \
		bookworm "$dir" "$sources"
}

# conf_strip DIR: drop what a container gets from its runtime or never reads,
# and what imagetool cannot or should not carry (device nodes, sockets, the
# build host's hostname and resolv.conf); hard links become symlinks (imagetool
# would store each link as a full copy).
conf_strip() {
	local r=$1 d inode path first prev=""
	for d in dev proc sys run tmp var/lib/apt/lists var/cache/apt var/log; do
		[[ -d $r/$d ]] && find "$r/$d" -mindepth 1 ! -type d -delete
	done
	for d in dev proc sys run tmp var/lib/apt/lists var/cache/apt; do
		[[ -d $r/$d ]] && find "$r/$d" -mindepth 1 -depth -type d -delete
	done
	rm -f "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r/var/cache/ldconfig/aux-cache" \
		"$r/etc/hostname" "$r/etc/resolv.conf"
	rm -rf "$r/usr/share/man" "$r/usr/share/info" "$r/usr/share/lintian"
	find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$r/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
	find "$r" -xdev \( -type s -o -type p -o -type b -o -type c \) -delete
	while read -r inode path; do
		if [[ $inode == "$prev" ]]; then
			ln -sfn "$(realpath -s --relative-to="$(dirname "$path")" "$first")" "$path"
		else
			prev=$inode first=$path
		fi
	done < <(find "$r" -xdev -type f -links +1 -printf '%i %p\n' | LC_ALL=C sort)
	mkdir -p "$r/dev" "$r/proc" "$r/sys" "$r/run/lock" "$r/tmp"
	chmod 1777 "$r/tmp" "$r/run/lock"
}

# conf_debian FLAVOR DIR PKG...: DIR becomes the stripped bookworm tree with
# PKGs, from the cached tarball of that package list (built when missing).
conf_debian() {
	local flavor=$1 dir=$2 cache sources key tarball tmp
	shift 2
	cache=$(conf_cache_dir)
	sources=$(conf_sources)
	key=$({
		echo bookworm "$@"
		cat "$sources"
		declare -f conf_mmdebstrap conf_strip
	} | sha256sum | cut -c1-16)
	tarball="$cache/rootfs-$flavor-$key.tar"
	if [[ ! -f $tarball ]]; then
		need_root "mmdebstrap (the Debian trees of the conformance images)"
		command -v mmdebstrap >/dev/null || apt_install mmdebstrap
		log "debian: $flavor (bookworm minbase${*:+ + $*}), cached as $(basename "$tarball")"
		tmp="$work/mmdebstrap-$flavor"
		rm -rf "$tmp"
		conf_mmdebstrap "$tmp" "$sources" "$@" >"$work/mmdebstrap-$flavor.log" 2>&1 || {
			tail -n 40 "$work/mmdebstrap-$flavor.log" >&2
			die "mmdebstrap $flavor failed (log: $work/mmdebstrap-$flavor.log)"
		}
		conf_strip "$tmp"
		mkdir -p "$cache"
		tar --numeric-owner --xattrs -C "$tmp" -cf "$tarball.tmp" .
		rm -f "$cache/rootfs-$flavor-"*.tar # older package lists
		mv "$tarball.tmp" "$tarball"
		rm -rf "$tmp"
	fi
	rm -rf "$dir" && mkdir -p "$dir"
	tar --numeric-owner --xattrs -C "$dir" -xpf "$tarball"
}

# conf_rootfs NAME: an empty directory for image NAME's tree.
conf_rootfs() {
	local d="$work/rootfs/$1"
	rm -rf "$d" && mkdir -p "$d" && echo "$d"
}

# --- busybox trees ----------------------------------------------------------

# The official busybox image's busybox: upstream 1.37.0, built static with its
# defconfig (as docker-library's image is), from the release tarball that
# Debian's pool carries unpatched as the .orig. Debian's own busybox-static
# will not do: Debian reverts upstream's ash change that passes environment
# variables with names a shell cannot hold (data-1, #@!x) on to children,
# and the [Conformance] "Secrets/ConfigMap ... variable names with various
# prefixes" tests print the environment with `sh -c env`.
CONF_BUSYBOX_VERSION=1.37.0
CONF_BUSYBOX_SHA256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
CONF_BUSYBOX_URL=http://deb.debian.org/debian/pool/main/b/busybox/busybox_$CONF_BUSYBOX_VERSION.orig.tar.bz2

# conf_busybox_binary: the path of that busybox, built once into the cache
# (1 CPU-minute; make, gcc and bzip2 installed when missing).
conf_busybox_binary() {
	local dir src tarball
	dir="$(conf_cache_dir)/busybox-$CONF_BUSYBOX_VERSION-$CONF_BUSYBOX_SHA256"
	if [[ ! -x $dir/busybox ]]; then
		command -v make >/dev/null && command -v gcc >/dev/null && command -v bzip2 >/dev/null || apt_install make gcc libc6-dev bzip2 >&2
		tarball="$(conf_cache_dir)/busybox_$CONF_BUSYBOX_VERSION.orig.tar.bz2"
		if [[ ! -f $tarball ]]; then
			mkdir -p "$(conf_cache_dir)"
			curl -fsS -m 300 -o "$tarball.tmp" "$CONF_BUSYBOX_URL" || die "cannot download $CONF_BUSYBOX_URL"
			mv "$tarball.tmp" "$tarball"
		fi
		echo "$CONF_BUSYBOX_SHA256  $tarball" | sha256sum -c --quiet >&2 || die "$tarball is not busybox $CONF_BUSYBOX_VERSION (sha256); delete it and run again"
		src="$work/busybox-src" && rm -rf "$src" && mkdir -p "$src"
		tar -C "$src" --strip-components=1 -xjf "$tarball"
		log "busybox: building $CONF_BUSYBOX_VERSION from source (static defconfig)" >&2
		(cd "$src" && make defconfig >/dev/null && sed -i 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' .config &&
			make -j"$(nproc)" >build.log 2>&1) || die "busybox did not build; see $src/build.log"
		# What the env-var-prefix tests need of it (see above).
		env -i 'data-1=value-1' '#@!data-1=x' "$src/busybox" sh -c env | grep -qx 'data-1=value-1' ||
			die "busybox's sh drops environment variables named data-1; the env-var-prefix [Conformance] tests would fail"
		mkdir -p "$dir.tmp" && install -m 0755 "$src/busybox" "$dir.tmp/busybox" && install -m 0644 "$src/LICENSE" "$dir.tmp/LICENSE"
		rm -rf "$dir" && mv "$dir.tmp" "$dir" && rm -rf "$src"
	fi
	echo "$dir"
}

# conf_busybox_tree DIR: that busybox as the official busybox image lays it
# out: every applet in /bin (tests call /bin/sysctl, /bin/cat, ...), and also
# at its install paths (/usr/bin/env, ...); its users and groups, /root,
# /tmp, /home, /var/www. Made once per run, then copied.
conf_busybox_tree() {
	local r="$work/rootfs/busybox-tree" bin applet
	if [[ ! -f $work/rootfs/.busybox-done ]]; then
		rm -rf "$r" && mkdir -p "$r"
		bin=$(conf_busybox_binary)
		install -D -m 0755 "$bin/busybox" "$r/bin/busybox"
		install -D -m 0644 "$bin/LICENSE" "$r/usr/share/doc/busybox/LICENSE"
		mkdir -p "$r/sbin" "$r/usr/bin" "$r/usr/sbin"
		for applet in $("$r/bin/busybox" --list-full); do
			[[ $applet == bin/busybox ]] && continue
			ln -sfn /bin/busybox "$r/$applet"
			ln -sfn busybox "$r/bin/${applet##*/}"
		done
		conf_busybox_etc "$r"
		touch "$work/rootfs/.busybox-done"
	fi
	cp -a "$r/." "$1/"
}

# conf_busybox_etc DIR: the official busybox image's users, groups and dirs.
conf_busybox_etc() {
	local r=$1
	mkdir -p "$r/etc"
	cat >"$r/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		daemon:x:1:1:daemon:/usr/sbin:/bin/false
		bin:x:2:2:bin:/bin:/bin/false
		sys:x:3:3:sys:/dev:/bin/false
		sync:x:4:100:sync:/bin:/bin/sync
		mail:x:8:8:mail:/var/spool/mail:/bin/false
		www-data:x:33:33:www-data:/var/www:/bin/false
		operator:x:37:37:Operator:/var:/bin/false
		nobody:x:65534:65534:nobody:/home:/bin/false
	EOF
	cat >"$r/etc/group" <<-'EOF'
		root:x:0:
		daemon:x:1:
		bin:x:2:
		sys:x:3:
		adm:x:4:
		tty:x:5:
		disk:x:6:
		lp:x:7:
		mail:x:8:
		kmem:x:9:
		wheel:x:10:root
		cdrom:x:11:
		dialout:x:18:
		floppy:x:19:
		video:x:28:
		audio:x:29:
		tape:x:32:
		www-data:x:33:
		operator:x:37:
		utmp:x:43:
		plugdev:x:46:
		staff:x:50:
		lock:x:54:
		netdev:x:82:
		users:x:100:
		nogroup:x:65534:
	EOF
	mkdir -p "$r/root" "$r/tmp" "$r/home" "$r/var/www" "$r/var/spool/mail"
	chmod 0700 "$r/root"
	chmod 1777 "$r/tmp"
}

# --- agnhost and the images built on it ----------------------------------------

# conf_agnhost_tree: $work/rootfs/agnhost, made once per run: upstream's
# Dockerfile on Debian instead of Alpine. Alpine's packages (bind-tools curl
# netcat-openbsd iproute2 iperf bash util-linux-misc socat) as Debian's, and,
# for the commands Alpine's busybox gives and tests run in agnhost pods (wget
# and netstat in service and port-forward tests, ps, ping, hexdump, ...), a
# link to Debian's static busybox for each applet no package provides.
conf_agnhost_tree() {
	local r="$work/rootfs/agnhost" applet name src="$KUBERNETES_SRC/test/images/agnhost"
	if [[ -f $work/rootfs/.agnhost-done ]]; then
		echo "$r"
		return
	fi
	conf_debian agnhost "$r" bind9-dnsutils curl netcat-openbsd iproute2 iperf bash util-linux socat busybox-static
	for applet in $("$r/usr/bin/busybox" --list-full); do
		name=${applet##*/}
		[[ -e $r/usr/bin/$name || -e $r/usr/sbin/$name || -e $r/usr/local/bin/$name || -L $r/usr/bin/$name || -L $r/usr/sbin/$name ]] && continue
		case $applet in
		*sbin/*) ln -s /usr/bin/busybox "$r/usr/sbin/$name" ;;
		*) ln -s busybox "$r/usr/bin/$name" ;;
		esac
	done
	ln -s /usr/bin/iperf "$r/usr/local/bin/iperf"
	# adduser -u 1000 -D user-defined-in-image; addgroup -g 50000 group-defined-in-image;
	# addgroup user-defined-in-image group-defined-in-image (home is root-owned here: imagetool)
	echo 'user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh' >>"$r/etc/passwd"
	echo 'user-defined-in-image:!:::::::' >>"$r/etc/shadow"
	printf '%s\n' 'user-defined-in-image:x:1000:' 'group-defined-in-image:x:50000:user-defined-in-image' >>"$r/etc/group"
	printf '%s\n' 'user-defined-in-image:!::' 'group-defined-in-image:!::user-defined-in-image' >>"$r/etc/gshadow"
	mkdir -p "$r/home/user-defined-in-image" "$r/uploads"
	install -m 0644 "$src/porter/localhost.crt" "$src/porter/localhost.key" "$r/"
	install -m 0755 "$work/out/agnhost" "$r/agnhost"
	ln -s agnhost "$r/agnhost-2"
	touch "$work/rootfs/.agnhost-done"
	echo "$r"
}

conf_agnhost_args=(-entrypoint '["/agnhost"]' -workdir / -expose 80/tcp -expose 8080/tcp -expose 8081/tcp -expose 9376/tcp -expose 5000/tcp)

# agnhost: the suite's do-everything test server.
conf_image_agnhost() {
	local rootfs
	rootfs=$(conf_agnhost_tree)
	conf_write "$(conf_ref Agnhost)" agnhost.tar "${conf_agnhost_args[@]}" -cmd '["pause"]'
}

# agnhost "previous" (2.55): the same agnhost under the older tag; upgrade and
# rollout tests (Deployment, DaemonSet, StatefulSet, Pods lifecycle, kubectl
# diff, all [Conformance]) start from it and move to the current one.
conf_image_agnhost_prev() {
	local rootfs
	rootfs=$(conf_agnhost_tree)
	conf_write "$(conf_ref AgnhostPrev)" agnhost-prev.tar "${conf_agnhost_args[@]}" -cmd '["pause"]'
}

# conf_webserver_image ID NAME: kitten/nautilus: agnhost + NAME.jpg and
# data.json in / (their Dockerfiles COPY into the default WORKDIR /).
conf_webserver_image() {
	local id=$1 name=$2 base rootfs html="$KUBERNETES_SRC/test/images/$2/html"
	base=$(conf_agnhost_tree)
	rootfs=$(conf_rootfs "$name")
	cp -a "$base/." "$rootfs/"
	install -m 0644 "$html/$name.jpg" "$html/data.json" "$rootfs/"
	conf_write "$(conf_ref "$id")" "$name.tar" "${conf_agnhost_args[@]}" -cmd '["test-webserver"]'
}

conf_image_kitten() { conf_webserver_image Kitten kitten; }
conf_image_nautilus() { conf_webserver_image Nautilus nautilus; }

# --- the others ---------------------------------------------------------------

# busybox: upstream's is the official busybox image; this is Debian's
# busybox-static laid out the same way.
conf_image_busybox() {
	local rootfs
	rootfs=$(conf_rootfs busybox)
	conf_busybox_tree "$rootfs"
	conf_write "$(conf_ref BusyBox)" busybox.tar -cmd '["sh"]'
}

# conf_nginx_tree: Debian's nginx set up as the official nginx image runs:
# its nginx.conf and conf.d/default.conf (port 80, /usr/share/nginx/html),
# logs to stdout/stderr, in the foreground, and its entrypoint's one step
# that matters here: listen on [::]:80 too when the pod has IPv6.
conf_nginx_tree() {
	local r="$work/rootfs/nginx"
	if [[ -f $work/rootfs/.nginx-done ]]; then
		echo "$r"
		return
	fi
	conf_debian nginx "$r" nginx
	rm -f "$r/etc/nginx/sites-enabled/default"
	cat >"$r/etc/nginx/nginx.conf" <<-'EOF'
		user  www-data;
		worker_processes  auto;

		error_log  /var/log/nginx/error.log notice;
		pid        /run/nginx.pid;

		events {
		    worker_connections  1024;
		}

		http {
		    include       /etc/nginx/mime.types;
		    default_type  application/octet-stream;

		    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
		                      '$status $body_bytes_sent "$http_referer" '
		                      '"$http_user_agent" "$http_x_forwarded_for"';

		    access_log  /var/log/nginx/access.log  main;

		    sendfile        on;
		    keepalive_timeout  65;

		    include /etc/nginx/conf.d/*.conf;
		}
	EOF
	cat >"$r/etc/nginx/conf.d/default.conf" <<-'EOF'
		server {
		    listen       80;
		    server_name  localhost;

		    location / {
		        root   /usr/share/nginx/html;
		        index  index.html index.htm;
		    }

		    error_page   500 502 503 504  /50x.html;
		    location = /50x.html {
		        root   /usr/share/nginx/html;
		    }
		}
	EOF
	cat >"$r/usr/share/nginx/html/50x.html" <<-'EOF'
		<!DOCTYPE html>
		<html>
		<head>
		<title>Error</title>
		</head>
		<body>
		<h1>An error occurred.</h1>
		<p>Sorry, the page you are looking for is currently unavailable.<br/>
		Please try again later.</p>
		</body>
		</html>
	EOF
	ln -sfn /dev/stdout "$r/var/log/nginx/access.log"
	ln -sfn /dev/stderr "$r/var/log/nginx/error.log"
	cat >"$r/docker-entrypoint.sh" <<-'EOF'
		#!/bin/sh
		# As the official nginx image's entrypoint (10-listen-on-ipv6-by-default.sh):
		# when the command is nginx and the pod has IPv6, listen on [::]:80 too.
		set -e
		conf=/etc/nginx/conf.d/default.conf
		if [ "$1" = nginx ] && [ -e /proc/net/if_inet6 ] && ! grep -q 'listen  *\[::\]:80;' "$conf"; then
		    if [ -w "$conf" ] && sed -i 's/^\( *\)listen  *80;/&\n\1listen       [::]:80;/' "$conf" 2>/dev/null; then
		        echo "$0: enabled listen on IPv6 in $conf"
		    else
		        echo "$0: cannot modify $conf (read-only file system?): IPv4 only"
		    fi
		fi
		[ "$1" = nginx ] && echo "$0: Configuration complete; ready for start up"
		exec "$@"
	EOF
	chmod 0755 "$r/docker-entrypoint.sh"
	touch "$work/rootfs/.nginx-done"
	echo "$r"
}

conf_nginx_args=(-entrypoint '["/docker-entrypoint.sh"]' -cmd '["nginx","-g","daemon off;"]' -expose 80/tcp)

# nginx (1.27 tag) and nginx-new (1.28 tag): Debian's nginx under both names.
conf_image_nginx() {
	local rootfs
	rootfs=$(conf_nginx_tree)
	conf_write "$(conf_ref Nginx)" nginx.tar "${conf_nginx_args[@]}"
}

conf_image_nginx_new() {
	local rootfs
	rootfs=$(conf_nginx_tree)
	conf_write "$(conf_ref NginxNew)" nginx-new.tar "${conf_nginx_args[@]}"
}

# nonewprivs: nnp (prints its effective uid) setuid root, on the busybox tree
# (upstream: Alpine, whose userland is busybox).
conf_image_nonewprivs() {
	local rootfs
	rootfs=$(conf_rootfs nonewprivs)
	conf_busybox_tree "$rootfs"
	install -D -m 4755 "$work/out/nnp" "$rootfs/usr/local/bin/nnp"
	conf_write "$(conf_ref Nonewprivs)" nonewprivs.tar -cmd '["nnp"]'
}

# nonroot: upstream's debian-base (bookworm) with USER 1234.
conf_image_nonroot() {
	local rootfs
	rootfs=$(conf_rootfs nonroot)
	conf_debian base "$rootfs"
	conf_write "$(conf_ref NonRoot)" nonroot.tar -user 1234 -cmd '["/bin/sh"]'
}

# glibc-dns-testing: debian:bookworm-slim + dnsutils (dig, nslookup, host),
# the DNS tests' glibc resolver client.
conf_image_glibc_dns_testing() {
	local rootfs
	rootfs=$(conf_rootfs glibc-dns-testing)
	conf_debian dns "$rootfs" dnsutils
	conf_write "$(conf_ref GlibcDnsTesting)" glibc-dns-testing.tar -cmd '["bash"]'
}

# sample-apiserver: /sample-apiserver (k8s.io/sample-apiserver of the pinned
# staging version) as entrypoint, on the busybox tree (upstream: Alpine).
conf_image_sample_apiserver() {
	local rootfs
	rootfs=$(conf_rootfs sample-apiserver)
	conf_busybox_tree "$rootfs"
	install -m 0755 "$work/out/sample-apiserver" "$rootfs/sample-apiserver"
	conf_write "$(conf_ref APIServer)" sample-apiserver.tar -entrypoint '["/sample-apiserver"]'
}

# conf_etcd_binary: the payload's etcd (multicall etcd/etcdutl, static) when a
# payload of the pinned version is in the cache, else built the same way from
# bootstrap/modules/etcd.
conf_etcd_binary() {
	local b best=""
	if [[ -n ${CONFORMANCE_ETCD:-} ]]; then
		echo "$CONFORMANCE_ETCD"
		return
	fi
	for b in "$K8S_CACHE_DIR"/payload/*/bin/etcd; do
		[[ -x $b ]] || continue
		"$b" --version 2>/dev/null | grep -qx "etcd Version: ${ETCD_VERSION#v}" || continue
		[[ -z $best || $b -nt $best ]] && best=$b
	done
	if [[ -z $best ]]; then
		best="$work/out/etcd"
		log "build: etcd $ETCD_VERSION (bootstrap/modules/etcd) for the etcd image"
		(cd "$conf_boot/modules/etcd" && CGO_ENABLED=0 go build -trimpath -o "$best" \
			-ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" .) >&2
	fi
	echo "$best"
}

# etcd: the aggregator test's sample-apiserver pod runs /usr/local/bin/etcd
# next to it. Upstream's image is etcd 3.7 on distroless; this is the payload's
# pinned etcd (etcdutl as a link; no etcdctl) on an otherwise empty tree.
conf_image_etcd() {
	local rootfs bin
	bin=$(conf_etcd_binary)
	rootfs=$(conf_rootfs etcd)
	install -D -m 0755 "$bin" "$rootfs/usr/local/bin/etcd"
	ln -s etcd "$rootfs/usr/local/bin/etcdutl"
	mkdir -p "$rootfs/etc" "$rootfs/var/lib/etcd"
	mkdir -m 1777 "$rootfs/tmp"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
	conf_write "$(conf_ref Etcd)" etcd.tar -workdir / -expose 2379/tcp -expose 2380/tcp
}

# --- what is not built ----------------------------------------------------------

# conf_suite_images: every image the suite lists: `e2e.test --list-images` when
# build.sh has linked it, else the same list read from the module's sources
# (manifest.go, and the CSI manifests test/utils/image/csi_manifest.go adds).
conf_suite_images() {
	local e2e=${CONFORMANCE_E2E_TEST:-$stage/bin/e2e.test} id m="$KUBERNETES_SRC/test/utils/image/manifest.go"
	if [[ -x $e2e ]] && "$e2e" --list-images >"$work/list-images" 2>/dev/null; then
		LC_ALL=C sort -u "$work/list-images"
		return
	fi
	{
		sed -n -E 's/^\s*configs\[([A-Za-z0-9]+)\] = Config\{.*/\1/p' "$m" | while read -r id; do
			conf_ref "$id"
		done
		grep -rhE '^\s*(- )?image:\s*\S+/\S+:\S+' --include='*.yaml' "$KUBERNETES_SRC/test/e2e/testing-manifests/storage-csi" |
			sed -E 's/^\s*(- )?image:\s*//; s/\s.*//; s/^"//; s/"$//'
	} | LC_ALL=C sort -u
}

# conf_missing_reason REF: why REF is not built, and which [Conformance] tests
# (`framework.ConformanceIt`) would need it, from a reading of test/e2e.
conf_missing_reason() {
	case $1 in
	registry.k8s.io/pause:*) echo "not built here: the node payload carries it (images/pause.tar)" ;;
	*/k8s-authenticated-test/agnhost:*) echo "private-registry image (credential-provider test, RC/ReplicaSet 'private image' tests, gce only); no [Conformance] test" ;;
	invalid.registry.k8s.io/*) echo "deliberately unpullable (common/node/runtime.go 'should not be able to pull image from invalid registry', NodeConformance); no [Conformance] test" ;;
	*/apparmor-loader:*) echo "AppArmor profile loader (framework/security/apparmor.go, AppArmor feature tests); no [Conformance] test" ;;
	*/distroless-iptables:*) echo "distroless + iptables (network/kube_proxy.go 'should set TCP CLOSE_WAIT timeout [Privileged]'); no [Conformance] test" ;;
	*/ipc-utils:*) echo "only in the node e2e pre-pull list (common/util.go); no e2e.test test runs it" ;;
	*/nfs-provisioner:*) echo "NFS provisioner (storage/utils); no [Conformance] test" ;;
	*/node-perf/*) echo "node e2e performance workloads (test/e2e_node); no e2e.test test runs it" ;;
	*/perl:*) echo "used by test/e2e_node only; no e2e.test test runs it" ;;
	*/regression-issue-74839:*) echo "network/conntrack.go 'invalid conntrack state bug [Privileged]'; no [Conformance] test" ;;
	*/resource-consumer:*) echo "HPA/autoscaling tests (framework/autoscaling); no [Conformance] test" ;;
	*/volume/nfs:* | */volume/iscsi:*) echo "in-tree NFS/iSCSI volume servers (storage tests); no [Conformance] test" ;;
	*/sample-device-plugin:*) echo "node e2e device plugin tests; no e2e.test [Conformance] test" ;;
	registry.k8s.io/sig-storage/* | registry.k8s.io/cloud-provider-gcp/* | */busybox:1.36.1-1)
		echo "CSI driver/sidecar of testing-manifests/storage-csi (csi-hostpath, mock, gce-pd: [Driver: ...] storage tests); no [Conformance] test" ;;
	*) echo "not built: no [Conformance] test uses it" ;;
	esac
}

# conformance_images: every image below into $stage/images, and
# $stage/images.txt: "<ref> <archive>" per image, "missing <ref> <why>" per
# other image the suite lists.
conformance_images() {
	local f ref line
	local -A built=()
	conf_built=()
	mkdir -p "$stage/images" "$work/rootfs"
	rm -f "$work/rootfs/".*-done
	for f in agnhost agnhost_prev kitten nautilus busybox nginx nginx_new nonewprivs nonroot \
		glibc_dns_testing sample_apiserver etcd; do
		"conf_image_$f"
	done
	for line in "${conf_built[@]}"; do built[${line%% *}]=1; done
	{
		printf '%s\n' "${conf_built[@]}"
		while read -r ref; do
			[[ -z $ref || -n ${built[$ref]:-} ]] && continue
			echo "missing $ref $(conf_missing_reason "$ref")"
		done < <(conf_suite_images)
	} >"$stage/images.txt"
	rm -rf "$work/rootfs"
	log "images: ${#conf_built[@]} built, $(grep -c '^missing ' "$stage/images.txt") missing (see images.txt)"
}
