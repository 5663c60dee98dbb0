#!/usr/bin/env bash
# tools/package.sh [OUTDIR]: builds the Debian package sockredir_VERSION_ARCH.deb from a clean clone of HEAD, with
# Debian's default compiler flags and a release build (warnings are not errors here), into OUTDIR (default
# build-deb/). The last line it prints is the package's path. Needs what tools/setup.sh installs (dpkg-dev, meson,
# clang, ...); installs nothing itself.
#
# The package holds /usr/sbin/sockredir-min, the systemd unit (enabled and started at install where systemd runs,
# stopped and removed with the package: it detaches at the stop), sockredir-min(8) and the bash completion.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/build-deb}")"
log() { echo "package.sh: $*" >&2; }

for tool in git meson ninja dpkg-deb dpkg-buildflags gzip; do
    command -v "$tool" >/dev/null || {
        log "$tool not found (run tools/setup.sh)"
        exit 1
    }
done

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
if ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then
    log "note: uncommitted changes are left out: the package is built from HEAD ($(git -C "$root" rev-parse --short HEAD))"
fi
git clone --quiet --no-hardlinks "$root" "$work/src"

# Debian's default flags (dpkg-buildflags: -O2, -fstack-protector-strong, _FORTIFY_SOURCE, relro, ...).
eval "$(dpkg-buildflags --export=sh)"
log "building $(git -C "$work/src" rev-parse --short HEAD) with Debian's flags (CXXFLAGS=$CXXFLAGS)"
meson setup "$work/build" "$work/src" --buildtype=release --prefix=/usr --sbindir=sbin -Dwerror=false \
    >"$work/setup.log" 2>&1 || {
    cat "$work/setup.log" >&2
    log "meson setup failed"
    exit 1
}
ninja -C "$work/build" sockredir-min >"$work/build.log" 2>&1 || {
    tail -50 "$work/build.log" >&2
    log "the build failed"
    exit 1
}
pkgroot="$work/root"
meson install -C "$work/build" --no-rebuild --destdir "$pkgroot" >"$work/install.log" 2>&1 || {
    cat "$work/install.log" >&2
    log "meson install failed"
    exit 1
}

version="$(meson introspect --projectinfo "$work/build" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
arch="$(dpkg --print-architecture)"
date="$(git -C "$work/src" log -1 --format=%cD)"
maintainer="sockredir developers <sockredir@users.noreply.github.com>"

# Debian's documentation: the man page compressed, the copyright file, the (native) changelog.
gzip -9n "$pkgroot/usr/share/man/man8/sockredir-min.8"
doc="$pkgroot/usr/share/doc/sockredir"
install -d -m 0755 "$doc"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sockredir
Source: https://github.com/sockredir/sockredir

Files: *
Copyright: 2026 the sockredir developers
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
 documentation files (the "Software"), to deal in the Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
 permit persons to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or substantial portions of
 the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
 THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
 TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF
cat >"$work/changelog" <<EOF
sockredir ($version) unstable; urgency=medium

  * Release $version, built from commit $(git -C "$work/src" rev-parse --short HEAD).

 -- $maintainer  $date
EOF
gzip -9nc "$work/changelog" >"$doc/changelog.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"

# One static binary is the product (an initramfs, a FROM scratch image, any host without a matching libc): the
# override says so to lintian, which flags static binaries as an error by default.
install -d -m 0755 "$pkgroot/usr/share/lintian/overrides"
cat >"$pkgroot/usr/share/lintian/overrides/sockredir" <<'EOF'
# sockredir-min is static by design: the same file runs on servers, in FROM scratch containers and in an initramfs.
sockredir: statically-linked-binary [usr/sbin/sockredir-min]
EOF
chmod 0644 "$pkgroot/usr/share/lintian/overrides/sockredir"

# The maintainer scripts: what debhelper's dh_installsystemd writes for a unit that is enabled and started at
# install, stopped at removal; the removal purges its enablement too, so that nothing is left behind (there is no
# configuration to keep).
install -d -m 0755 "$pkgroot/DEBIAN"
cat >"$pkgroot/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper unmask 'sockredir.service' >/dev/null || true
		if deb-systemd-helper --quiet was-enabled 'sockredir.service'; then
			deb-systemd-helper enable 'sockredir.service' >/dev/null || true
		else
			deb-systemd-helper update-state 'sockredir.service' >/dev/null || true
		fi
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		deb-systemd-invoke restart 'sockredir.service' >/dev/null || true
	fi
fi
EOF
cat >"$pkgroot/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	# run detaches at the stop: every connection goes back to TCP once its redirected data is read.
	deb-systemd-invoke stop 'sockredir.service' >/dev/null || true
fi
EOF
cat >"$pkgroot/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "remove" ] || [ "$1" = "purge" ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge 'sockredir.service' >/dev/null || true
		deb-systemd-helper unmask 'sockredir.service' >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
EOF
chmod 0755 "$pkgroot/DEBIAN/postinst" "$pkgroot/DEBIAN/prerm" "$pkgroot/DEBIAN/postrm"

size="$(du -sk --exclude=DEBIAN "$pkgroot" | cut -f1)"
cat >"$pkgroot/DEBIAN/control" <<EOF
Package: sockredir
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Section: net
Priority: optional
Homepage: https://github.com/sockredir/sockredir
Description: same-host TCP acceleration with eBPF (sock_ops and sk_msg)
 sockredir-min puts established TCP sockets between two processes of one host
 into a sockhash and hands each message straight to the peer socket, skipping
 the TCP/IP stack, while every socket behaviour stays plain TCP's.
 .
 The package holds the static binary, a systemd unit that runs it on the
 cgroup2 root (enabled and started at install), its manual page and bash
 completion. The kernel needs BPF, BTF and cgroup2: sockredir-min check says.
EOF
(cd "$pkgroot" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$pkgroot/DEBIAN/control" "$pkgroot/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/sockredir_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkgroot" "$deb" >/dev/null
log "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB): $(dpkg-deb -c "$deb" | awk '$6 !~ /\/$/ {print $6}' | tr '\n' ' ')"
echo "$deb"
