"""What the run measures: its settings, the workloads' parameters and the rows of the report, in order."""

from dataclasses import dataclass

# Ports inside the private namespaces: nothing on the host is ever seen or touched.
IPERF_PORT = 5201
SOCKPERF_PORT = 11111
REDIS_PORT = 16379
HTTP_PORT = 18080

IPERF_SIZES = [("64 B", 64), ("1 KiB", 1024), ("16 KiB", 16384), ("128 KiB", 131072), ("1 MiB", 1048576)]
# The event-driven workloads (tools/bench-data/evloop.c: non-blocking sockets and epoll, the connections sockredir
# redirects): one-way streams of these write sizes, ping-pong as sockperf's, and a reader that stops reading.
STREAM_SIZES = IPERF_SIZES
HOLD_SIZES = [("16 KiB", 16384), ("128 KiB", 131072)]
SOCKPERF_SIZES = [("64 B", 64), ("16 KiB", 16384)]
# Where sockperf's server and client run (taskset CPUs). Ping-pong latency on a VM depends
# mostly on whether a wakeup crosses vCPUs (an IPI, a VM exit), so both are measured.
SOCKPERF_PLACEMENTS = [("two CPUs", "2cpu", ("0", "1")), ("one CPU", "1cpu", ("0", "0"))]
RSS_CYCLES = 5  # attach+detach cycles per round and loader under /usr/bin/time
# redis-benchmark counts requests, not seconds: this many per second of --time makes each of its tests run about as
# long as the other workloads' runs (it does 120,000-160,000 requests/s here).
REDIS_REQUESTS_PER_SECOND = 150000
# Workloads of the program-cost pass, by name (Workloads.cost_job runs each): (title, job).
COST_JOBS = [("stream, 64 B writes", "stream_64"), ("stream, 128 KiB writes", "stream_131072"),
             ("ping-pong 64 B, one CPU", "pingpong_64_1cpu"), ("redis-benchmark", "redis"), ("nginx + wrk", "nginx")]
# The programs whose run statistics the cost pass reports: sk_msg per sendmsg on a socket in the map, sock_ops per
# socket callback, the observer per recvmsg of the host.
COST_PROGRAMS = ("sk_msg", "sock_ops", "observer")
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
    smc: bool = False  # also run over SMC-D loopback, where the kernel has it (a third column)


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
    for name, size in STREAM_SIZES:
        rows.append((f"copy_stream_{size}", f"stream's two copies alone, one process, {name} writes (Gbit/s)"))
    rows += [
        ("start_sockredir", "process start and exit: `sockredir-min --version` (ms)"),
        ("start_bpftool", "process start and exit: `bpftool version` (ms)"),
    ]
    return rows


def metrics():
    """Every row of the table, in order."""
    rows = []
    for name, size in STREAM_SIZES:
        rows.append(Metric(f"stream_{size}", f"stream, {name} writes (Gbit/s)", True, smc=True))
    for name, size in STREAM_SIZES:
        rows.append(Metric(f"cpu_stream_{size}", f"stream, {name} writes: CPU time per MB moved (µs)", False,
                           smc=True))
    for pname, tag, _ in SOCKPERF_PLACEMENTS:
        for name, size in SOCKPERF_SIZES:
            rows.append(Metric(f"pingpong_{size}_{tag}_p50", f"ping-pong {name}, {pname}, RTT p50 (µs)", False,
                               smc=True))
            rows.append(Metric(f"pingpong_{size}_{tag}_p99", f"ping-pong {name}, {pname}, RTT p99 (µs)", False,
                               smc=True))
    for name, size in HOLD_SIZES:
        rows.append(Metric(f"hold_{size}_queued", f"reader stops, {name} writes: bytes queued until the writer is "
                                                  "held back (KiB)", False, smc=True))
        rows.append(Metric(f"hold_{size}_mem", f"reader stops, {name} writes: host TCP memory grew by (KiB)", False,
                           smc=True))
    for name, size in IPERF_SIZES:
        rows.append(Metric(f"iperf3_{size}", f"iperf3, blocking (stays on TCP), {name} writes (Gbit/s)", True))
    for name, size in IPERF_SIZES:
        rows.append(Metric(f"cpu_iperf3_{size}", f"iperf3, blocking, {name} writes: CPU time per MB moved (µs)", False))
    for pname, tag, _ in SOCKPERF_PLACEMENTS:
        for name, size in SOCKPERF_SIZES:
            rows.append(Metric(f"sockperf_{size}_{tag}_p50",
                               f"sockperf, blocking (stays on TCP), ping-pong {name}, {pname}, RTT p50 (µs)", False))
            rows.append(Metric(f"sockperf_{size}_{tag}_p99",
                               f"sockperf, blocking (stays on TCP), ping-pong {name}, {pname}, RTT p99 (µs)", False))
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
