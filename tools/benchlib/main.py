"""The command line of tools/bench and the order of the run: checks, set-up, the rounds, the program-cost pass,
cleanup on every path, then the report."""

import argparse
import os
import platform
import shutil
import signal
import statistics
import time

from .base import ROOT, BenchError, log, run
from .config import REDIS_REQUESTS_PER_SECOND, TOOLS, Settings, floors, metrics
from .loaders import Loaders
from .report import cost_lines, machine, summarize, table_lines, target_lines, versions, write_chart, write_markdown
from .sandbox import Sandbox
from .workloads import Workloads


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="tools/bench",
        description="Plain loopback TCP against sockredir, interleaved (A B A B), medians over rounds, each run "
                    "in a private network namespace and cgroup; and sockredir-min's attach/detach against "
                    "bpftool. Writes OUT/benchmarks.md and OUT/benchmarks.png and prints the table.")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--time", type=int, default=None, dest="seconds",
                    help="seconds per iperf3, sockperf and wrk run (default 5; --quick: 1)")
    ap.add_argument("--cycles", type=int, default=None,
                    help="attach+detach cycles per round and loader (default 20; --quick: 5)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run: 1 round, 1 s runs, fewer requests")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="output directory (default docs/)")
    ap.add_argument("--bin", default=os.environ.get("SOCKREDIR_BIN", os.path.join(ROOT, "build", "sockredir-min")),
                    help="sockredir-min to measure (default $SOCKREDIR_BIN or build/sockredir-min)")
    a = ap.parse_args(argv)
    seconds = a.seconds or (1 if a.quick else 5)
    s = Settings(rounds=a.rounds or (1 if a.quick else 3), seconds=seconds,
                 redis_requests=20000 if a.quick else REDIS_REQUESTS_PER_SECOND * seconds,
                 cycles=a.cycles or (5 if a.quick else 20), quick=a.quick)
    if s.rounds < 1 or s.seconds < 1 or s.cycles < 1:
        ap.error("--rounds, --time and --cycles want positive numbers")
    return a, s


def main(argv):
    args, settings = parse_args(argv)
    binary = os.path.abspath(args.bin)
    if os.geteuid() != 0:
        log("needs root (cgroups, network namespaces, bpffs, BPF)")
        return 1
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        log(f"missing {', '.join(missing)}; run tools/setup.sh")
        return 1
    if not os.access(binary, os.X_OK):
        log(f"{binary} not found; run tools/setup.sh")
        return 1
    try:
        import matplotlib  # noqa: F401  (only checked here; used for the chart)
    except ImportError:
        log("matplotlib missing (python3-matplotlib); run tools/setup.sh")
        return 1
    os.makedirs(args.out, exist_ok=True)

    # A signal ends the run through the finally below, which removes everything.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    start = time.monotonic()
    info = (machine(), versions(binary))
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        log(f"note: load average {info[0]['load']} at the start; other work may disturb the numbers")
    results = {m.key: {"plain": [], "redirected": [], "smc": []} for m in metrics()}
    floor_values = {key: [] for key, _ in floors()}
    checks = []
    costs = []
    sandbox = Sandbox(binary)
    workloads = Workloads(sandbox, settings)
    loaders = Loaders(sandbox, settings)
    try:
        sandbox.setup()
        log(f"cgroups under {os.path.dirname(sandbox.cg['plain'])}, pins on {sandbox.bpffs}, "
            f"{settings.rounds} round(s) of {settings.seconds} s runs")
        loaders.build_bpftool_object()
        workloads.build_tools()
        if not workloads.smc:
            log(f"no SMC-D column: {workloads.smc_reason}")
        loaders.check_bpftool_sequence()
        run([binary, "attach", "--cgroup", sandbox.cg["redirected"], "--pin-dir", sandbox.pin["redirected"]])
        sandbox.sockredir_pins.append(sandbox.pin["redirected"])
        sizes_info = loaders.sizes(results)
        for rnd in range(1, settings.rounds + 1):
            workloads.traffic_round(rnd, results, checks)
            workloads.floor_round(rnd, floor_values)
            loaders.loader_round(rnd, results, floor_values)
        try:
            workloads.cost_pass(costs)
        except BenchError as e:
            # The timed results stand without it: report them, and why this part is missing.
            log(f"warning: program cost not measured: {e}")
            costs.clear()
            costs.append(("not measured", str(e), 0, float("nan")))
        # sizes are measured once; every round shows the same value.
        for mode in ("plain", "redirected"):
            results["loader_size"][mode] *= settings.rounds
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        sandbox.cleanup()

    wall = time.monotonic() - start
    rows = summarize(results)
    md = os.path.join(args.out, "benchmarks.md")
    png = os.path.join(args.out, "benchmarks.png")
    write_markdown(md, rows, results, checks, info, settings, wall, sizes_info, floor_values, costs,
                   workloads.smc_reason)
    write_chart(rows, png, f"sockredir: redirected / plain, medians of {settings.rounds} round(s)\n"
                           f"{info[0]['cpu']}, {info[0]['cores']} cores, Linux {platform.release()}")
    print("\n".join(table_lines(rows)))
    print()
    print("\n".join(target_lines(rows, {key: statistics.median(v) for key, v in floor_values.items()}, costs)))
    print()
    print("\n".join(cost_lines(costs)))
    print(f"\nwrote {md} and {png}; the run took {wall:.0f} s")
    return 0
