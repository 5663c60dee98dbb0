#!/usr/bin/env bash
# Proves, under qemu, the sockmap receive-path defects on Debian's stock 6.12 kernel and their absence on the patched one.
#
# usage: contrib/kernel/prove.sh [--kernel-image PATH] [--stock-kernel PATH] [--timeout SECONDS]
#
# (a) the stock kernel: the newest linux-image-6.12.* unpacked by tools/vmtest.sh in $VMTEST_CACHE (default
#     build-vm/vmtest-cache of this repository; run tools/vmtest.sh --kernel 6.12 once to fetch it), or --stock-kernel;
# (b) the patched kernel: --kernel-image, or what contrib/kernel/build.sh builds (cached, so fast after the first time).
# Each boots (TCG, -smp 1, 512 MiB) a busybox initramfs whose /init runs contrib/kernel/proof.c, built here with
# gcc -static, and reboots. Exit 0 only when the stock kernel says "PROOF VERDICT: DEFECT" and the patched one
# "PROOF VERDICT: FIXED"; 1 otherwise; 77 when qemu, busybox or the stock kernel is missing.
# Never touches the host's kernel state: everything BPF happens inside the VMs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image=""
stock=""
timeout_s=300
cache="${VMTEST_CACHE:-$root/build-vm/vmtest-cache}"
busybox="${VMTEST_BUSYBOX:-/bin/busybox}"

usage() {
    sed -n 's/^# usage: //p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
while (($# > 0)); do
    case "$1" in
    --kernel-image) image="${2:?}"; shift 2 ;;
    --stock-kernel) stock="${2:?}"; shift 2 ;;
    --timeout) timeout_s="${2:?}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "prove.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

skip() { echo "SKIP: $*"; exit 77; }
for tool in qemu-system-x86_64 cpio gzip gcc timeout; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool not installed"
done
[[ -x "$busybox" ]] || skip "$busybox not found (apt-get install busybox-static)"

if [[ -z "$stock" ]]; then
    dir="$(find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-6.12.*' 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$dir" && -f "$dir/ready" && -f "$dir/vmlinuz" ]] ||
        skip "no Debian 6.12 kernel in $cache (run tools/vmtest.sh --kernel 6.12 once, or pass --stock-kernel)"
    stock="$dir/vmlinuz"
    stock_name="$(cat "$dir/ready")"
else
    stock_name="$stock"
fi
if [[ -z "$image" ]]; then
    echo "=== the patched kernel: contrib/kernel/build.sh (cached after the first build)"
    image="$("$here/build.sh" | tail -n 1)"
fi
[[ -f "$image" ]] || { echo "prove.sh: $image not found"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# --- the initramfs: busybox, the static proof, an /init that runs it and reboots -------------------------------------
gcc -O2 -Wall -Wextra -static -pthread -o "$work/proof" "$here/proof.c"
tree="$work/tree"
mkdir -p "$tree"/{bin,dev,proc,sys}
cp -- "$busybox" "$tree/bin/busybox"
cp -- "$work/proof" "$tree/bin/proof"
((EUID != 0)) || mknod -m 600 "$tree/dev/console" c 5 1
cat >"$tree/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
echo "PROOF kernel $(uname -r) $(uname -v)"
ip link set lo up || echo "PROOF VERDICT: BROKEN (cannot bring lo up)"
/bin/proof || echo "PROOF VERDICT: BROKEN (proof exited $?)"
sync
# reboot, not poweroff: the small kernel has no ACPI; qemu runs with -no-reboot and exits.
reboot -f
echo b >/proc/sysrq-trigger
sleep 30
INIT
chmod 755 "$tree/init"
(cd "$tree" && find . -print0 | cpio --null -o -H newc --owner 0:0 --quiet) | gzip -1 >"$work/initrd.gz"

# --- boot each kernel once -------------------------------------------------------------------------------------------
boot() { # name kernel -> prints the serial log, sets $verdict
    local name="$1" kernel="$2" log="$work/serial-${1%%:*}.log" rc=0 start=$SECONDS
    echo "=== $name ($kernel)"
    timeout -k 10 "$timeout_s" qemu-system-x86_64 \
        -nodefaults -no-reboot -display none -monitor none -serial stdio \
        -m 512 -smp 1 \
        -kernel "$kernel" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet" \
        </dev/null >"$log" 2>&1 || rc=$?
    tr -d '\r' <"$log" | grep '^PROOF' | sed 's/^/    /'
    verdict="$(tr -d '\r' <"$log" | grep -m 1 '^PROOF VERDICT:' || true)"
    if [[ -z "$verdict" ]]; then
        ((rc == 124 || rc == 137)) && verdict="(timed out after $timeout_s s)" || verdict="(qemu exited $rc without a verdict)"
        tr -d '\r' <"$log" | tail -n 20 | sed 's/^/    | /'
    fi
    echo "    (booted and judged in $((SECONDS - start)) s)"
}

boot "stock: $stock_name" "$stock"
stock_verdict="$verdict"
label="$(paste -sd, "$(dirname "$image")/patches" 2>/dev/null || true)"
boot "patched: ${label:-no patch list next to the image}" "$image"
patched_verdict="$verdict"

echo "=== results"
rc=0
if [[ "$stock_verdict" == "PROOF VERDICT: DEFECT"* ]]; then
    echo "stock:   as expected, the defects are there: $stock_verdict"
else
    echo "stock:   UNEXPECTED: $stock_verdict"
    rc=1
fi
if [[ "$patched_verdict" == "PROOF VERDICT: FIXED"* ]]; then
    echo "patched: as expected, no defect: $patched_verdict"
else
    echo "patched: UNEXPECTED: $patched_verdict"
    rc=1
fi
((rc == 0)) && echo "prove: PASS" || echo "prove: FAIL"
exit "$rc"
