#!/usr/bin/env bash
# Builds a small x86_64 kernel from Debian's linux-source-6.12 with the patches of contrib/kernel/patches/.
#
# usage: contrib/kernel/build.sh [--cache DIR] [--jobs N] [--unpatched] [--print-image]
#
# Everything lives outside the git tree, in the cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/sockredir-kernel,
# or $SOCKREDIR_KERNEL_CACHE, or --cache):
#   src/linux-source-6.12/   the tarball extracted once, patched in place (the applied patches are recorded, and
#                            reversed before another set is applied)
#   images/HASH/bzImage      one kernel per hash of (source package version, patches, config fragment, this script)
# A kernel already in images/ is not rebuilt. The configuration is `make tinyconfig` plus the options of
# sockredir-proof.config; the script fails if `make olddefconfig` dropped one of them. The build runs niced
# (nice -n 19 make -j2: the machine's cores are shared). Missing build tools are installed with apt-get (as root).
# --unpatched builds the same configuration without the patches: a control that differs from the patched kernel by
# the patches alone (prove.sh --stock-kernel "$(contrib/kernel/build.sh --unpatched | tail -n 1)").
# The last line of output is the path of the bzImage (alone with --print-image).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SOCKREDIR_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sockredir-kernel}"
tarball="${SOCKREDIR_KERNEL_TARBALL:-/usr/src/linux-source-6.12.tar.xz}"
jobs=2
quiet=0
unpatched=0

usage() {
    sed -n 's/^# usage: //p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
while (($# > 0)); do
    case "$1" in
    --cache) cache="${2:?}"; shift 2 ;;
    --jobs) jobs="${2:?}"; shift 2 ;;
    --unpatched) unpatched=1; shift ;;
    --print-image) quiet=1; shift ;;
    -h | --help) usage ;;
    *) echo "build.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

log() { ((quiet)) || echo "build.sh: $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

# --- build dependencies (idempotent: apt-get only for what is missing) -----------------------------------------------
deps=(bc bison flex libelf-dev libssl-dev cpio make gcc patch xz-utils)
[[ -f "$tarball" ]] || deps+=(linux-source-6.12)
missing=()
for pkg in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
    ((EUID == 0)) || die "missing packages: ${missing[*]} (run as root, or apt-get install them)"
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
fi
[[ -f "$tarball" ]] || die "$tarball not found (apt-get install linux-source-6.12)"

# --- the cache key ---------------------------------------------------------------------------------------------------
shopt -s nullglob
patches=("$here"/patches/*.patch)
shopt -u nullglob
((!unpatched)) || patches=()
fragment="$here/sockredir-proof.config"
source_version="$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || stat -c '%s %Y' "$tarball")"
hash="$({
    echo "$source_version"
    for p in "${patches[@]}"; do echo "== $(basename "$p")"; cat "$p"; done
    echo "== config"; cat "$fragment"
    echo "== build.sh"; cat "${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-16)"
image="$cache/images/$hash/bzImage"

if [[ -f "$image" ]]; then
    log "cached: $hash (source $source_version, ${#patches[@]} patch(es))"
    echo "$image"
    exit 0
fi

# --- the source tree: extracted once, patches applied in place --------------------------------------------------------
mkdir -p "$cache/images"
src="$cache/src/linux-source-6.12"
applied="$cache/src/applied"        # copies of the patches now applied to $src, in order
if [[ ! -f "$cache/src/extracted" || "$(cat "$cache/src/extracted")" != "$source_version" ]]; then
    log "extracting $tarball into $cache/src"
    rm -rf -- "$cache/src"
    mkdir -p "$cache/src"
    tar -xJf "$tarball" -C "$cache/src"
    [[ -f "$src/Makefile" ]] || die "the tarball did not hold linux-source-6.12/"
    mkdir -p "$applied"
    echo "$source_version" >"$cache/src/extracted"
fi

# Reverse what a previous run applied (newest first), unless it is exactly the set wanted now.
same=1
shopt -s nullglob
old=("$applied"/*.patch)
shopt -u nullglob
if ((${#old[@]} != ${#patches[@]})); then
    same=0
else
    for i in "${!old[@]}"; do
        cmp -s "${old[$i]}" "${patches[$i]}" || same=0
    done
fi
if ((!same)); then
    for ((i = ${#old[@]} - 1; i >= 0; i--)); do
        log "reversing $(basename "${old[$i]}")"
        patch -d "$src" -p1 -R -s -N <"${old[$i]}" || die "cannot reverse ${old[$i]}: remove $cache/src and run again"
        rm -f -- "${old[$i]}"
    done
    for p in "${patches[@]}"; do
        log "applying $(basename "$p")"
        patch -d "$src" -p1 -s -N --no-backup-if-mismatch <"$p" || die "$(basename "$p") does not apply to linux-source $source_version"
        cp -- "$p" "$applied/"
    done
fi

# --- configuration: tinyconfig + the fragment, checked after olddefconfig --------------------------------------------
kmake() { nice -n 19 make -C "$src" ARCH=x86_64 -j"$jobs" "$@"; }
log "configuring: tinyconfig + $(basename "$fragment")"
kmake -s tinyconfig >&2
wanted=()
while read -r line; do
    [[ "$line" =~ ^(CONFIG_[A-Z0-9_]+)=y$ ]] || continue
    wanted+=("${BASH_REMATCH[1]}")
    "$src/scripts/config" --file "$src/.config" --enable "${BASH_REMATCH[1]#CONFIG_}"
done <"$fragment"
kmake -s olddefconfig >&2
dropped=()
for option in "${wanted[@]}"; do
    grep -q "^$option=y\$" "$src/.config" || dropped+=("$option")
done
((${#dropped[@]} == 0)) || die "make olddefconfig dropped: ${dropped[*]}"
log "config: $(grep -c '=y$' "$src/.config") options built in, all ${#wanted[@]} of the fragment kept"

# --- the build -------------------------------------------------------------------------------------------------------
log "building bzImage (nice -n 19 make -j$jobs)"
start=$SECONDS
kmake bzImage >"$cache/build-$hash.log" 2>&1 || { tail -n 40 "$cache/build-$hash.log" >&2; die "the build failed (log: $cache/build-$hash.log)"; }
elapsed=$((SECONDS - start))
mkdir -p "$cache/images/$hash"
cp -- "$src/.config" "$cache/images/$hash/config"
cp -- "$src/arch/x86/boot/bzImage" "$image.tmp"
mv -- "$image.tmp" "$image"
printf '%s\n' "${patches[@]##*/}" >"$cache/images/$hash/patches"
echo "$elapsed" >"$cache/images/$hash/build-seconds"
log "built in $((elapsed / 60)) min $((elapsed % 60)) s: $(stat -c %s "$image") bytes"
echo "$image"
