#!/usr/bin/env bash
# Meson test: tools/bench --quick runs end to end and writes its table and chart (structure only, never numbers).
set -euo pipefail

root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

# cannot_run (skip outside CI, fail under CI=true), fail and cgroup2_mount.
# shellcheck source=tools/lib/sandbox.sh
source "$root/tools/lib/sandbox.sh"

((EUID == 0)) || cannot_run "not root (needs cgroups, network namespaces, bpffs and BPF)"
for tool in taskset ip nsenter ss mount umount clang strip ldd bpftool iperf3 sockperf redis-server \
    redis-benchmark nginx wrk /usr/bin/time /usr/bin/python3; do
    command -v "$tool" >/dev/null 2>&1 || cannot_run "$tool not installed (run tools/setup.sh)"
done
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || cannot_run "python3-matplotlib not installed (run tools/setup.sh)"
# The binary tools/bench measures (its default), and the cgroup2 mount it will put its cgroups under.
bin="${SOCKREDIR_BIN:-$root/build/sockredir-min}"
[[ -x "$bin" ]] || fail "$bin is not an executable file"
cgroup2_mount "$bin" >/dev/null || cannot_run "no cgroup2 mount (see $bin check)"

out="$(mktemp -d /tmp/sockredir-bench-smoke.XXXXXX)"
trap 'rm -rf -- "$out"' EXIT

# A hand-written Analysis in an existing output file survives the run.
printf '# old\n\n## Analysis\n\nkept-%s\n' "$$" >"$out/benchmarks.md"

# No timing is asserted anywhere: a busy machine changes the numbers, not the structure.
"$root/tools/bench" --quick --out "$out" >"$out/stdout.txt" 2>"$out/stderr.txt" || {
    cat "$out/stderr.txt" "$out/stdout.txt"
    fail "tools/bench --quick failed"
}

md="$out/benchmarks.md"
[[ -s "$md" ]] || fail "no $md"
# From here on every check runs and the failures are listed together: one run of the bench takes a minute.
problems=()
problem() {
    problems+=("$*")
}
grep -qE '^\| workload \| plain \| redirected \| ratio \|( SMC-D \| SMC-D / plain \|)?$' "$md" ||
    problem "no results table header in $md"
grep -qx '| target | measured | met | floor on this machine |' "$md" || problem "no targets table in $md"
grep -qx '| floor | value |' "$md" || problem "no floors table in $md"
grep -qx '## Analysis' "$md" || problem "no '## Analysis' heading in $md"
grep -qx "kept-$$" "$md" || problem "the existing Analysis section was not kept in $md"
if grep -qx '# old' "$md"; then problem "the old report above the Analysis was kept in $md"; fi

# One row per workload, with three numbers; the same rows printed on stdout.
rows=(
    "stream, 64 B writes (Gbit/s)"
    "stream, 1 KiB writes (Gbit/s)"
    "stream, 16 KiB writes (Gbit/s)"
    "stream, 128 KiB writes (Gbit/s)"
    "stream, 1 MiB writes (Gbit/s)"
    "stream, 64 B writes: CPU time per MB moved (µs)"
    "stream, 1 KiB writes: CPU time per MB moved (µs)"
    "stream, 16 KiB writes: CPU time per MB moved (µs)"
    "stream, 128 KiB writes: CPU time per MB moved (µs)"
    "stream, 1 MiB writes: CPU time per MB moved (µs)"
    "ping-pong 64 B, two CPUs, RTT p50 (µs)"
    "ping-pong 64 B, two CPUs, RTT p99 (µs)"
    "ping-pong 16 KiB, two CPUs, RTT p50 (µs)"
    "ping-pong 16 KiB, two CPUs, RTT p99 (µs)"
    "ping-pong 64 B, one CPU, RTT p50 (µs)"
    "ping-pong 64 B, one CPU, RTT p99 (µs)"
    "ping-pong 16 KiB, one CPU, RTT p50 (µs)"
    "ping-pong 16 KiB, one CPU, RTT p99 (µs)"
    "reader stops, 16 KiB writes: bytes queued until the writer is held back (KiB)"
    "reader stops, 16 KiB writes: host TCP memory grew by (KiB)"
    "reader stops, 128 KiB writes: bytes queued until the writer is held back (KiB)"
    "reader stops, 128 KiB writes: host TCP memory grew by (KiB)"
    "iperf3, blocking (stays on TCP), 64 B writes (Gbit/s)"
    "iperf3, blocking (stays on TCP), 1 KiB writes (Gbit/s)"
    "iperf3, blocking (stays on TCP), 16 KiB writes (Gbit/s)"
    "iperf3, blocking (stays on TCP), 128 KiB writes (Gbit/s)"
    "iperf3, blocking (stays on TCP), 1 MiB writes (Gbit/s)"
    "iperf3, blocking, 64 B writes: CPU time per MB moved (µs)"
    "iperf3, blocking, 1 MiB writes: CPU time per MB moved (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 64 B, two CPUs, RTT p50 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 64 B, two CPUs, RTT p99 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 16 KiB, two CPUs, RTT p50 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 16 KiB, two CPUs, RTT p99 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 64 B, one CPU, RTT p50 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 64 B, one CPU, RTT p99 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 16 KiB, one CPU, RTT p50 (µs)"
    "sockperf, blocking (stays on TCP), ping-pong 16 KiB, one CPU, RTT p99 (µs)"
    "redis-benchmark GET (requests/s)"
    "redis-benchmark SET (requests/s)"
    "redis-benchmark: CPU time per request, SET and GET (µs)"
    "nginx + wrk, 16 KiB page (requests/s)"
    "nginx + wrk, latency p50 (µs)"
    "nginx + wrk, latency p99 (µs)"
    "nginx + wrk: CPU time per request (µs)"
    "loader: attach+detach cycle (ms)"
    "loader: attach (ms)"
    "loader: detach (ms)"
    "loader: peak RSS of attach (KiB)"
    "loader: stripped binary + shared libraries (KiB)"
)
number='[0-9][0-9,]*(\.[0-9]+)?'
for row in "${rows[@]}"; do
    for file in "$md" "$out/stdout.txt"; do
        # The label is matched literally (it holds '(', '+', '.'), the cells as numbers.
        awk -v label="| $row |" -v num="^ $number $" -F'|' '
            index($0, label) == 1 && (NF == 6 || NF == 8) && $3 ~ num && $4 ~ num && $5 ~ num { found = 1 }
            END { exit !found }' "$file" || problem "no row '$row' with three numbers in $file"
    done
done
for target in "every traffic workload redirected" "CPU time per MB" "stream, 128 KiB writes" "ping-pong 64 B, one CPU" \
    "ping-pong 16 KiB, one CPU" "redis GET" "redis SET" "nginx + wrk requests/s" "sk_msg ≤ 150 ns" \
    "attach+detach cycle" "peak RSS of attach"; do
    grep -q "^| $target.* | \(yes\|no\) | [^|]*|\$" "$md" || problem "no target row '$target' in $md"
done
# The floors: one number each, in the floors table.
floors=(
    "pipe ping-pong 64 B, two CPUs, RTT p50 (µs)"
    "pipe ping-pong 16 KiB, one CPU, RTT p99 (µs)"
    "stream's two copies alone, one process, 128 KiB writes (Gbit/s)"
    "process start and exit: \`sockredir-min --version\` (ms)"
    "process start and exit: \`bpftool version\` (ms)"
)
for row in "${floors[@]}"; do
    awk -v label="| $row |" -v num="^ $number $" -F'|' '
        index($0, label) == 1 && NF == 4 && $3 ~ num { found = 1 }
        END { exit !found }' "$md" || problem "no floor row '$row' with a number in $md"
done
# Our programs' cost: each workload of the extra pass ran sk_msg (runs > 0) and has a cost per run.
grep -qx '| workload | program | runs | ns per run |' "$md" ||
    problem "no program cost table in $md ($(grep -m1 '^Not measured in this run:' "$md" || echo 'no reason given'))"
for workload in "stream, 64 B writes" "stream, 128 KiB writes" "ping-pong 64 B, one CPU" "redis-benchmark" \
    "nginx + wrk"; do
    awk -v label="| $workload | \`sk_msg\` |" -v num="^ $number $" -F'|' '
        index($0, label) == 1 && NF == 6 && $4 ~ num && $4 !~ /^ 0 $/ && $5 ~ num { found = 1 }
        END { exit !found }' "$md" || problem "no sk_msg cost row with runs for '$workload' in $md"
done

# The ping-pong targets name their floor as a ratio, and so does the bulk target.
grep -q '^| ping-pong 64 B, one CPU, RTT p50 .* | a pipe, no socket at all: [0-9.]*× |$' "$md" ||
    problem "no floor ratio in the ping-pong targets"
grep -q '^| stream, 128 KiB writes ≥ 2× plain .* | the two copies alone: [0-9.]*× plain |$' "$md" ||
    problem "no floor ratio in the bulk target"
# SMC-D loopback: a column where the kernel has it, else the reason and the published figures.
grep -qx '## SMC-D loopback' "$md" || problem "no SMC-D loopback section in $md"
if ! grep -q '^| workload | plain | redirected | ratio | SMC-D | SMC-D / plain |$' "$md"; then
    grep -q '^Not measured here: .*published figures' "$md" || problem "neither an SMC-D column nor why not in $md"
fi


png="$out/benchmarks.png"
if [[ ! -s "$png" ]]; then
    problem "no $png"
elif [[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]]; then
    problem "$png is not a PNG"
fi

if ((${#problems[@]} > 0)); then
    printf 'FAIL: %s\n' "${problems[@]}" >&2
    exit 1
fi

echo "ok: tools/bench --quick wrote a table with ${#rows[@]} workload rows, the targets and a PNG chart"
