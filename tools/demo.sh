#!/usr/bin/env bash
# Reproduces the classic observation in isolation: a stream over loopback with plain TCP and
# with sockredir, counting what tcpdump sees, the TCP segments sent and the throughput.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: tools/demo.sh [--time SECONDS]

Streams 128 KiB writes over 127.0.0.1 twice in a private network namespace,
inside a cgroup of its own: once plain, once with sockredir-min attached to that
cgroup (pins on a private bpffs mount). The two ends are an event-driven client
and server (tools/bench-data/evloop.c: non-blocking sockets and epoll, every byte
checked), the kind of connection sockredir redirects; iperf3 reads in blocking
mode, which keeps its connections on TCP. Prints packets seen by tcpdump on lo,
TCP segments sent (/proc/net/snmp Tcp OutSegs) and throughput for both runs.
Needs root and the packages of tools/setup.sh. Leaves nothing behind.

  --time SECONDS   length of each run (default 5)
USAGE
}

duration=5
while (($# > 0)); do
    case "$1" in
    --time)
        (($# >= 2)) || { echo "demo.sh: --time needs a value" >&2; exit 2; }
        duration="$2"
        shift 2
        ;;
    --time=*)
        duration="${1#--time=}"
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "demo.sh: unknown argument '$1'" >&2
        usage >&2
        exit 2
        ;;
    esac
done
if ! [[ "$duration" =~ ^[1-9][0-9]*$ ]]; then
    echo "demo.sh: --time wants a positive number of seconds, not '$duration'" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SOCKREDIR_BIN:-$root/build/sockredir-min}"

if ((EUID != 0)); then
    echo "demo.sh: needs root (network namespace, cgroup, bpffs, BPF)" >&2
    exit 1
fi
for tool in ip nsenter clang tcpdump ss python3 mount umount; do
    command -v "$tool" >/dev/null 2>&1 || { echo "demo.sh: $tool not found; run tools/setup.sh" >&2; exit 1; }
done
[[ -x "$bin" ]] || { echo "demo.sh: $bin not found; run tools/setup.sh" >&2; exit 1; }

# shellcheck source=tools/lib/sandbox.sh
source "$root/tools/lib/sandbox.sh"

# --- everything this script creates, undone by cleanup on every exit path ----------
name="sockredir-demo-$$"
work=""
pids=()

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM HUP
    set +e
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    sandbox_destroy demo.sh "$bin"
    [[ -n "$work" ]] && rm -rf -- "$work"
    exit "$rc"
}
sandbox_traps cleanup

cgroup_root="$(cgroup2_mount "$bin")" || { echo "demo.sh: no cgroup2 mount (see $bin check)" >&2; exit 1; }
work="$(mktemp -d /tmp/sockredir-demo.XXXXXX)"
sandbox_create "$cgroup_root"
# "${in_demo[@]}" CMD...: run CMD in the demo cgroup and network namespace (tools/lib/sandbox.sh).
in_demo=("${in_sandbox[@]}")

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
    local what="$1" tries=$(($2 * 10))
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        ((--tries > 0)) || { echo "demo.sh: timed out waiting for $what" >&2; return 1; }
        sleep 0.1
    done
}

# run_once LABEL: one stream under tcpdump; leaves LABEL.packets, .segs, .gbps in $work.
run_once() {
    local label="$1" tcpdump_pid client_pid segs_before segs_after
    local pcap="$work/$label.pcap" tlog="$work/$label.tcpdump.log"

    # Headers are enough to count; a short snap length keeps the file small at 40 Gbit/s.
    # --immediate-mode: otherwise libpcap hands packets over in ring blocks, and the
    # last, partly filled block (the teardown) is lost when tcpdump is stopped. Every
    # TCP packet: the namespace is the demo's own, and evloop's port is the kernel's pick.
    "${in_demo[@]}" tcpdump -i lo -n -s 128 -B 16384 --immediate-mode -U -w "$pcap" tcp 2>"$tlog" &
    tcpdump_pid=$!
    pids+=("$tcpdump_pid")
    wait_for "tcpdump to listen" 10 grep -q 'listening on' "$tlog"

    segs_before="$(tcp_out_segs)"
    # In the background and waited for: a signal to this script interrupts wait and the
    # trap runs at once, where a foreground child would delay it to the end of the run.
    "${in_demo[@]}" timeout $((duration + 30)) "$work/evloop" stream 131072 "$duration" \
        >"$work/$label.out" 2>&1 &
    client_pid=$!
    pids+=("$client_pid")
    if ! wait "$client_pid"; then
        echo "demo.sh: the stream failed ($label):" >&2
        cat "$work/$label.out" >&2
        return 1
    fi
    sleep 0.5 # the last FIN/ACK
    segs_after="$(tcp_out_segs)"

    # TERM, not INT: a background job of a script starts with SIGINT ignored.
    kill -TERM "$tcpdump_pid"
    wait "$tcpdump_pid" || true
    pids=()

    tcpdump -r "$pcap" -n 2>/dev/null | wc -l >"$work/$label.packets"
    # ("received by filter" is twice "captured" on lo: the filter sees each packet on
    # its way out and on its way in, and libpcap keeps one. Drops are what matter.)
    local dropped
    dropped="$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel$/\1/p' "$tlog")"
    if [[ "${dropped:-0}" != 0 ]]; then
        echo "demo.sh: note: tcpdump dropped $dropped packets in the $label run;" \
            "its count is a lower bound" >&2
    fi
    echo $((segs_after - segs_before)) >"$work/$label.segs"
    # evloop prints "BYTES_PER_S BYTES", as its reader counted them.
    python3 -c '
import sys
rate, _total = open(sys.argv[1]).read().split()
print("%.2f" % (float(rate) * 8 / 1e9))' "$work/$label.out" >"$work/$label.gbps"
}

clang -O2 -Wall -o "$work/evloop" "$root/tools/bench-data/evloop.c" ||
    { echo "demo.sh: could not build tools/bench-data/evloop.c" >&2; exit 1; }

echo "demo: netns $name, cgroup $cgroup, pins $pin_dir, ${duration}s per run"

echo "demo: run 1/2: plain TCP"
run_once plain

echo "demo: run 2/2: redirected (sockredir-min attach --cgroup $cgroup --pin-dir $pin_dir)"
"$bin" attach --cgroup "$cgroup" --pin-dir "$pin_dir"
run_once redirected
"$bin" status --pin-dir "$pin_dir" >"$work/status.txt"
"$bin" detach --pin-dir "$pin_dir"

python3 - "$work" <<'PY'
import sys

work = sys.argv[1]
def read(label, what):
    with open(f"{work}/{label}.{what}") as f:
        return float(f.read().strip())

rows = [
    ("packets tcpdump saw on lo", "packets", "%d"),
    ("TCP segments sent (OutSegs)", "segs", "%d"),
    ("throughput (Gbit/s)", "gbps", "%.2f"),
]
print()
print("%-28s | %12s | %12s | %10s" % ("metric", "plain TCP", "redirected", "ratio"))
print("-" * 29 + "+" + "-" * 14 + "+" + "-" * 14 + "+" + "-" * 11)
for title, what, fmt in rows:
    plain, redir = read("plain", what), read("redirected", what)
    ratio = "%.3g" % (redir / plain) if plain else "n/a"
    print("%-28s | %12s | %12s | %10s" % (title, fmt % plain, fmt % redir, ratio))
PY
echo
echo "sockredir counters during the redirected run:"
sed -n '/^  sockets /,$p' "$work/status.txt"
