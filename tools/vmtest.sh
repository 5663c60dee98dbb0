#!/usr/bin/env bash
# Boots Debian's 6.1 and 6.12 kernels under qemu (TCG) with a busybox initramfs: attach, a proven transfer, detach.
#
# usage: tools/vmtest.sh [--kernel 6.1|6.12]... [--bin PATH] [--peer PATH] [--trace TOOL TP_OBJECT FEXIT_OBJECT] [--conform PATH] [--conform-out DIR] [--timeout SECONDS]
#
# The kernels are Debian's linux-image packages, fetched with apt-get download into a cache
# ($VMTEST_CACHE, default build-vm/vmtest-cache) and unpacked there with dpkg-deb: never installed
# on this host. The initramfs holds busybox-static, the static sockredir-min and the static test
# peer (tests/vm/peer.cpp) and an /init that mounts only proc, sysfs and devtmpfs: attach has to
# mount bpffs and cgroup2 itself. Inside the VM, /init proves a plain TCP transfer takes TCP
# segments, runs check and attach, proves a transfer redirected (segment counters) and intact,
# reads status, detaches, proves TCP is back, runs the receive-path tracing proof (--trace: tp_btf and fexit
# programs with CO-RE against the guest kernel's BTF, tests/vm/trace.cpp), runs the conformance suite (--conform:
# sockredir-conform with two cgroups of its own, attached to one of them with a pin dir of its own, judged by the
# ledger tests/conform/known-differences.txt; its JSON comes back over the console between marker lines and is
# written to --conform-out DIR, default the binary's directory, as conformance-<kernel>.json), and prints
# "VMTEST PASS" or "VMTEST FAIL: reason" before it powers off. Exit 0 when every kernel passed; 77 (skip) when qemu
# or a kernel package is not available, except under CI=true, where that is a failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

kernels=()
bin="$root/build/sockredir-min"
peer="$root/build/sockredir-vm-peer"
trace=()
conform=""
conform_out=""
timeout_s="${VMTEST_TIMEOUT:-240}"
cache="${VMTEST_CACHE:-$root/build-vm/vmtest-cache}"
busybox="${VMTEST_BUSYBOX:-/bin/busybox}"

usage() {
    sed -n 's/^# usage: //p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

while (($# > 0)); do
    case "$1" in
    --kernel) kernels+=("${2:?}"); shift 2 ;;
    --bin) bin="${2:?}"; shift 2 ;;
    --peer) peer="${2:?}"; shift 2 ;;
    --trace) trace=("${2:?}" "${3:?}" "${4:?}"); shift 4 ;;
    --conform) conform="${2:?}"; shift 2 ;;
    --conform-out) conform_out="${2:?}"; shift 2 ;;
    --timeout) timeout_s="${2:?}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "vmtest.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
((${#kernels[@]} > 0)) || kernels=(6.1 6.12)

# Cannot run here: a skip outside CI, a failure under CI=true.
cannot_run() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "VMTEST FAIL: CI=true and cannot run: $*"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

for tool in qemu-system-x86_64 cpio gzip dpkg-deb apt-get timeout; do
    command -v "$tool" >/dev/null 2>&1 || cannot_run "$tool not installed (run tools/setup.sh)"
done
[[ -x "$busybox" ]] || cannot_run "$busybox not found (apt-get install busybox-static)"

# A program for the initramfs must be static: there is no libc in there.
require_static() {
    [[ -x "$1" ]] || cannot_run "$1 is not built (ninja -C build)"
    if ldd "$1" >/dev/null 2>&1; then
        echo "VMTEST FAIL: $1 is dynamically linked; the initramfs has no libc"
        exit 1
    fi
}
require_static "$bin"
require_static "$peer"
((${#trace[@]} == 0)) || require_static "${trace[0]}"
if [[ -n "$conform" ]]; then
    require_static "$conform"
    command -v python3 >/dev/null 2>&1 || cannot_run "python3 not installed (it checks the conformance JSON)"
    [[ -n "$conform_out" ]] || conform_out="$(dirname "$conform")"
    mkdir -p "$conform_out"
fi
require_static "$busybox"

# Options the VM needs built in (this script loads no modules; Debian builds all of them in).
required_config=(
    CONFIG_BPF_SYSCALL CONFIG_CGROUPS CONFIG_CGROUP_BPF CONFIG_NET_SOCK_MSG CONFIG_INET
    CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE CONFIG_BINFMT_ELF
)

# The package name of the newest amd64 kernel of a series that apt knows, or nothing.
newest_package() {
    local pattern
    case "$1" in
    6.1) pattern='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$' ;;
    *) echo "vmtest.sh: unknown kernel series '$1' (6.1 or 6.12)" >&2; exit 2 ;;
    esac
    apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" | sort -V | tail -n 1 || true
}

# Fetches and unpacks the kernel of a series into the cache; prints the directory holding vmlinuz and config.
fetch_kernel() {
    local series="$1" pkg dir tmp deb
    pkg="$(newest_package "$series")"
    if [[ -z "$pkg" && $EUID -eq 0 ]]; then
        apt-get update -qq >&2 || true
        pkg="$(newest_package "$series")"
    fi
    if [[ -z "$pkg" ]]; then
        # Offline: the newest kernel of this series already in the cache will do.
        dir="$(find "$cache" -mindepth 1 -maxdepth 1 -type d -name "linux-image-${series}[.-]*" 2>/dev/null |
            sort -V | tail -n 1)"
        [[ -n "$dir" && -f "$dir/ready" ]] && { echo "$dir"; return 0; }
        return 1
    fi
    dir="$cache/$pkg"
    if [[ ! -f "$dir/ready" ]]; then
        mkdir -p "$cache"
        tmp="$(mktemp -d "$cache/.fetch-XXXXXX")"
        # The _apt user cannot write into a private directory: download as the caller.
        if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" "$pkg" >&2); then
            rm -rf -- "$tmp"
            return 1
        fi
        deb="$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n 1)"
        mkdir -p "$tmp/x"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' './boot/config-*'
        rm -rf -- "$dir"
        mkdir -p "$dir"
        mv "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz"
        mv "$tmp"/x/boot/config-* "$dir/config"
        rm -rf -- "$tmp"
        echo "$pkg" >"$dir/ready"
    fi
    echo "$dir"
}

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# --- the initramfs ---------------------------------------------------------------------------------------------------
initrd="$work/initrd.gz"
tree="$work/tree"
mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp}
cp -- "$busybox" "$tree/bin/busybox"
cp -- "$bin" "$tree/sbin/sockredir-min"
cp -- "$peer" "$tree/bin/sockredir-vm-peer"
if ((${#trace[@]} > 0)); then
    cp -- "${trace[0]}" "$tree/bin/sockredir-vm-trace"
    cp -- "${trace[1]}" "$tree/trace_tp.bpf.o"
    cp -- "${trace[2]}" "$tree/trace_fexit.bpf.o"
fi
if [[ -n "$conform" ]]; then
    cp -- "$conform" "$tree/bin/sockredir-conform"
    cp -- "$root/tests/conform/known-differences.txt" "$tree/known-differences.txt"
fi
# The kernel opens /dev/console for PID 1 before any devtmpfs is mounted.
if ((EUID == 0)); then
    mknod -m 600 "$tree/dev/console" c 5 1
fi
cat >"$tree/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of the vmtest initramfs: prove attach, redirection and detach on this kernel, say PASS or FAIL, power off.
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1

finish() {
    echo "$1"
    sync
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 30
}
fail() {
    finish "VMTEST FAIL: $*"
}
step() {
    echo "VMTEST step: $*"
}

echo "VMTEST kernel $(uname -r)"
# Nothing but proc, sysfs and devtmpfs: attach must mount bpffs and cgroup2 itself.
if grep -qE ' (bpf|cgroup2) ' /proc/mounts; then
    fail "bpffs or cgroup2 is mounted before attach"
fi
ip link set lo up || fail "cannot bring lo up"

step "plain TCP before attach"
sockredir-vm-peer --mib 8 --expect tcp || fail "the transfer before attach did not take TCP"

step "sockredir-min check"
sockredir-min check >/tmp/check.out || { cat /tmp/check.out; fail "check says this kernel cannot run sockredir"; }
cat /tmp/check.out
# The live self-tests, in a namespace and cgroup of their own with cgroup2 and bpffs mounted privately: every probe
# runs here, and says present or absent.
grep -q '^live self-tests ' /tmp/check.out || fail "check printed no live self-tests"
! grep -E '^  [a-z-]+ +not probed' /tmp/check.out || fail "a live self-test could not run"
grep -qE ' (bpf|cgroup2) ' /proc/mounts && fail "check's self-tests left a mount behind"
[ -z "$(ls /tmp | grep sockredir-selftest)" ] || fail "check's self-tests left /tmp/sockredir-selftest-* behind"

step "sockredir-min attach"
# The largest flight: this step proves the redirect path on this kernel, not the flow-control bound (the e2e tests
# and the conformance suite do), and on one CPU the sender runs far ahead of its reader.
sockredir-min attach --max-inflight 1073741824 2>/tmp/attach.err || { cat /tmp/attach.err; fail "attach failed"; }
cat /tmp/attach.err
# One warning line per defect its self-test found, as check found it.
if grep -qE '^  blocking-read-eagain +present' /tmp/check.out; then
    grep -q "^sockredir-min: warning: this kernel's sockmap path returns EAGAIN" /tmp/attach.err ||
        fail "attach did not warn of blocking-read-eagain"
fi
! grep -v '^sockredir-min: warning: ' /tmp/attach.err || fail "attach printed more than warnings on stderr"
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "attach did not mount bpffs at /sys/fs/bpf"
grep -q ' cgroup2 ' /proc/mounts || fail "attach did not mount cgroup2"
grep -E ' (bpf|cgroup2) ' /proc/mounts

step "redirected transfer (this VM is ours: the root cgroup)"
sockredir-vm-peer --mib 64 --expect redirected || fail "the transfer after attach was not redirected or not intact"

step "sockredir-min status"
sockredir-min status || fail "status failed"
sockredir-min status | grep -q '^  kernel defects  ' || fail "status shows no kernel defects line"
redirected="$(sockredir-min status | awk '$1 == "bytes_redirected" { print $2 }')"
[ "${redirected:-0}" -ge 67108864 ] || fail "status counts ${redirected:-0} bytes redirected, expected at least 64 MiB"

step "sockredir-min detach"
sockredir-min detach || fail "detach failed"
sockredir-min status | grep -q '^not attached' || fail "status after detach does not say not attached"
[ ! -e /sys/fs/bpf/sockredir ] || fail "pins left in /sys/fs/bpf/sockredir after detach"

step "plain TCP after detach"
sockredir-vm-peer --mib 8 --expect tcp || fail "the transfer after detach did not take TCP"

# Long-lived connections through a detach: each handed back to TCP (out of the sockhash, no EAGAIN from a blocking
# reader), no program or map left while they live, every byte intact. Once by the iterator, once by the unmap program.
# The pool streams small writes that nobody answers, which the adaptive path would move to TCP (and out of the map)
# before the detach: --no-adaptive.
step "a pool of 8 connections survives detach, handed back by the iterator"
sockredir-min attach --no-adaptive >/dev/null || fail "attach for the pool failed"
sockredir-vm-peer --pool 8 --detach /sbin/sockredir-min >/tmp/pool.log 2>&1
pool_rc=$?
cat /tmp/pool.log
[ "$pool_rc" -eq 0 ] || fail "the pool did not survive the detach by the iterator"
grep -q '(sockredir_evict)' /tmp/pool.log || fail "detach did not hand the pool back with sockredir_evict"
step "a pool of 4 connections survives detach, handed back by the unmap program"
sockredir-min attach --no-adaptive >/dev/null || fail "attach for the pool failed"
SOCKREDIR_TEST_EVICT_WITH=sockredir_unmap sockredir-vm-peer --pool 4 --detach /sbin/sockredir-min >/tmp/pool.log 2>&1
pool_rc=$?
cat /tmp/pool.log
[ "$pool_rc" -eq 0 ] || fail "the pool did not survive the detach by the unmap program"
grep -q '(sockredir_unmap)' /tmp/pool.log || fail "detach did not hand the pool back with sockredir_unmap"

if [ -x /bin/sockredir-vm-trace ]; then
    step "tracing on the receive path: tp_btf and fexit, CO-RE against this kernel's BTF"
    mkdir -p /sys/fs/bpf/trace
    sockredir-vm-trace /trace_tp.bpf.o /trace_fexit.bpf.o /sys/fs/bpf/trace || fail "the tracing proof failed"
    rmdir /sys/fs/bpf/trace || fail "the tracing proof left pins in /sys/fs/bpf/trace"
fi

if [ -x /bin/sockredir-conform ]; then
    step "conformance suite: plain and redirected cgroups of its own, pins in /sys/fs/bpf/conform"
    cgroot="$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)"
    [ -n "$cgroot" ] || fail "no cgroup2 mount for the conformance suite"
    mkdir "$cgroot/conform-plain" "$cgroot/conform-redirect" || fail "cannot make the conformance cgroups"
    sockredir-min attach --cgroup "$cgroot/conform-redirect" --pin-dir /sys/fs/bpf/conform >/dev/null ||
        fail "attach for the conformance suite failed"
    conform_rc=0
    sockredir-conform --plain-cgroup "$cgroot/conform-plain" --redirect-cgroup "$cgroot/conform-redirect" \
        --sockredir /sbin/sockredir-min --pin-dir /sys/fs/bpf/conform --ledger /known-differences.txt \
        --json /tmp/conformance.json || conform_rc=$?
    sockredir-min detach --pin-dir /sys/fs/bpf/conform >/dev/null || fail "detach after the conformance suite failed"
    if [ -f /tmp/conformance.json ]; then
        echo "VMTEST CONFORM JSON BEGIN"
        cat /tmp/conformance.json
        echo "VMTEST CONFORM JSON END"
    fi
    rmdir "$cgroot/conform-plain" "$cgroot/conform-redirect" || fail "cannot remove the conformance cgroups"
    [ "$conform_rc" -eq 0 ] || fail "the conformance suite failed (exit $conform_rc)"
fi

finish "VMTEST PASS $(uname -r)"
INIT
chmod 755 "$tree/init"
(cd "$tree" && find . -print0 | cpio --null -o -H newc --owner 0:0 --quiet) | gzip -1 >"$initrd"

# --- one VM per kernel, one at a time --------------------------------------------------------------------------------
passed=0
failed=0
results=()
for series in "${kernels[@]}"; do
    echo "=== Linux $series"
    if ! dir="$(fetch_kernel "$series")"; then
        cannot_run "no Debian linux-image package of Linux $series can be fetched" \
            "(apt-get download failed, or apt knows none: apt-get update?) and none is cached in $cache"
    fi
    echo "kernel package: $(cat "$dir/ready")"
    missing_config=()
    for option in "${required_config[@]}"; do
        grep -q "^$option=y\$" "$dir/config" || missing_config+=("$option")
    done
    if ((${#missing_config[@]} > 0)); then
        echo "VMTEST FAIL: Linux $series: not built in: ${missing_config[*]}"
        results+=("Linux $series: FAIL (not built in: ${missing_config[*]})")
        failed=$((failed + 1))
        continue
    fi

    log="$work/serial-$series.log"
    start=$SECONDS
    rc=0
    # TCG (no KVM here). -no-reboot and panic=-1: a dead PID 1 ends qemu instead of hanging it.
    timeout -k 10 "$timeout_s" qemu-system-x86_64 \
        -nodefaults -no-reboot -display none -monitor none -serial stdio \
        -m 512 -smp 1 \
        -kernel "$dir/vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet" \
        </dev/null >"$log" 2>&1 || rc=$?
    elapsed=$((SECONDS - start))
    tr -d '\r' <"$log" | sed 's/^/    /'

    verdict="$(tr -d '\r' <"$log" | grep -m 1 -E '^VMTEST (PASS|FAIL)' || true)"
    if [[ -n "$conform" ]]; then
        guest="$(tr -d '\r' <"$log" | sed -n 's/^VMTEST kernel //p' | head -n 1)"
        conform_json="$conform_out/conformance-${guest:-$series}.json"
        tr -d '\r' <"$log" | sed -n '/^VMTEST CONFORM JSON BEGIN$/,/^VMTEST CONFORM JSON END$/p' | sed '1d;$d' \
            >"$conform_json.tmp"
        if [[ -s "$conform_json.tmp" ]] && python3 -m json.tool "$conform_json.tmp" >/dev/null 2>&1; then
            mv -- "$conform_json.tmp" "$conform_json"
            echo "conformance results: $conform_json"
        else
            rm -f -- "$conform_json.tmp"
            if [[ "$verdict" == "VMTEST PASS"* ]]; then
                verdict="VMTEST FAIL: no readable conformance JSON on the console"
            fi
        fi
    fi
    if [[ "$verdict" == "VMTEST PASS"* ]]; then
        results+=("Linux $series ($(cat "$dir/ready")): PASS in ${elapsed} s")
        passed=$((passed + 1))
    else
        if ((rc == 124 || rc == 137)); then
            reason="timed out after ${timeout_s} s"
        elif [[ -n "$verdict" ]]; then
            reason="${verdict#VMTEST FAIL: }"
        else
            reason="qemu exited $rc without a verdict"
        fi
        results+=("Linux $series ($(cat "$dir/ready")): FAIL in ${elapsed} s: $reason")
        failed=$((failed + 1))
    fi
done

echo "=== results"
printf '%s\n' "${results[@]}"
echo "vmtest: $passed passed, $failed failed"
((failed == 0))
