"""What the run measures: its settings, the workloads' parameters and the rows of the report, in order."""

from dataclasses import dataclass

# Ports inside the private namespaces: nothing on the host is ever seen or touched.
IPERF_PORT = 5201
SOCKPERF_PORT = 11111
REDIS_PORT = 16379
HTTP_PORT = 18080

IPERF_SIZES = [("64 B", 64), ("1 KiB", 1024), ("16 KiB", 16384), ("128 KiB", 131072), ("1 MiB", 1048576)]
SOCKPERF_SIZES = [("64 B", 64), ("16 KiB", 16384)]
# Where sockperf's server and client run (taskset CPUs). Ping-pong latency on a VM depends
# mostly on whether a wakeup crosses vCPUs (an IPI, a VM exit), so both are measured.
SOCKPERF_PLACEMENTS = [("two CPUs", "2cpu", ("0", "1")), ("one CPU", "1cpu", ("0", "0"))]
RSS_CYCLES = 5  # attach+detach cycles per round and loader under /usr/bin/time
# redis-benchmark counts requests, not seconds: this many per second of --time makes each of its tests run about as
# long as the other workloads' runs (it does 120,000-160,000 requests/s here).
REDIS_REQUESTS_PER_SECOND = 150000
# Workloads of the program-cost pass: (title, iperf3 write size or None for sockperf 64 B on one CPU).
COST_JOBS = [("iperf3 -l 64 B", 64), ("iperf3 -l 128 KiB", 131072), ("sockperf pp -m 64, one CPU", None)]
# Each of them runs inside a window of the run statistics this much longer than --time: the namespace, the server's
# start and the client's own start and end fit in it with room to spare (a run that outlasts it is an error).
COST_WINDOW_MARGIN = 3

TOOLS = ["taskset", "ip", "nsenter", "ss", "mount", "umount", "clang", "strip", "ldd", "bpftool", "iperf3",
         "sockperf", "redis-server", "redis-benchmark", "nginx", "wrk", "/usr/bin/time"]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # the row of the table, with its unit
    higher_is_better: bool
    loader: bool = False  # columns: bpftool (plain) and sockredir-min (redirected)


@dataclass
class Settings:
    rounds: int
    seconds: int  # length of each timed run (iperf3, sockperf, wrk)
    redis_requests: int
    cycles: int  # attach+detach cycles per round and tool
    quick: bool


def floors():
    """The floors of this machine, measured in the same run: (key, label). No redirection is involved;
    they bound what any path between two local processes can reach here."""
    rows = []
    for pname, tag, _ in SOCKPERF_PLACEMENTS:
        for name, size in SOCKPERF_SIZES:
            rows.append((f"pipe_{size}_{tag}_p50", f"pipe ping-pong {name}, {pname}, RTT p50 (µs)"))
            rows.append((f"pipe_{size}_{tag}_p99", f"pipe ping-pong {name}, {pname}, RTT p99 (µs)"))
    rows += [
        ("start_sockredir", "process start and exit: `sockredir-min --version` (ms)"),
        ("start_bpftool", "process start and exit: `bpftool version` (ms)"),
    ]
    return rows


def metrics():
    """Every row of the table, in order."""
    rows = []
    for name, size in IPERF_SIZES:
        rows.append(Metric(f"iperf3_{size}", f"iperf3 throughput, {name} writes (Gbit/s)", True))
    for name, size in IPERF_SIZES:
        rows.append(Metric(f"cpu_iperf3_{size}", f"iperf3 {name} writes: CPU time per MB moved (µs)", False))
    for pname, tag, _ in SOCKPERF_PLACEMENTS:
        for name, size in SOCKPERF_SIZES:
            rows.append(Metric(f"sockperf_{size}_{tag}_p50", f"sockperf ping-pong {name}, {pname}, RTT p50 (µs)",
                               False))
            rows.append(Metric(f"sockperf_{size}_{tag}_p99", f"sockperf ping-pong {name}, {pname}, RTT p99 (µs)",
                               False))
    rows += [
        Metric("redis_get", "redis-benchmark GET (requests/s)", True),
        Metric("redis_set", "redis-benchmark SET (requests/s)", True),
        Metric("cpu_redis", "redis-benchmark: CPU time per request, SET and GET (µs)", False),
        Metric("wrk_rps", "nginx + wrk, 16 KiB page (requests/s)", True),
        Metric("wrk_p50", "nginx + wrk, latency p50 (µs)", False),
        Metric("wrk_p99", "nginx + wrk, latency p99 (µs)", False),
        Metric("cpu_wrk", "nginx + wrk: CPU time per request (µs)", False),
        Metric("loader_cycle", "loader: attach+detach cycle (ms)", False, True),
        Metric("loader_attach", "loader: attach (ms)", False, True),
        Metric("loader_detach", "loader: detach (ms)", False, True),
        Metric("loader_rss", "loader: peak RSS of attach (KiB)", False, True),
        Metric("loader_size", "loader: stripped binary + shared libraries (KiB)", False, True),
    ]
    return rows
