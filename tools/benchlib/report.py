"""The outputs of the run: the tables, OUT/benchmarks.md from the template benchmarks.md.in (its hand-written
"## Analysis" kept across runs), and the chart OUT/benchmarks.png."""

import contextlib
import datetime
import os
import platform
import re
import statistics
import string
import subprocess

from .base import ROOT
from .config import (COST_WINDOW_MARGIN, REDIS_REQUESTS_PER_SECOND, RSS_CYCLES, SOCKPERF_PLACEMENTS, SOCKPERF_SIZES,
                     floors, metrics)

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks.md.in")


def fmt(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(results):
    rows = []
    for m in metrics():
        plain = statistics.median(results[m.key]["plain"])
        redir = statistics.median(results[m.key]["redirected"])
        rows.append((m, plain, redir, redir / plain if plain else float("nan")))
    return rows


def table_lines(rows):
    lines = ["| workload | plain | redirected | ratio |", "|---|---:|---:|---:|"]
    for m, plain, redir, ratio in rows:
        lines.append(f"| {m.label} | {fmt(plain)} | {fmt(redir)} | {ratio:.2f} |")
    return lines


def targets(rows, floor):
    """(target, measured, met, the floor of this machine for it or "")."""
    by = {m.key: (plain, redir, ratio) for m, plain, redir, ratio in rows}
    cycle_speedup = by["loader_cycle"][0] / by["loader_cycle"][1]
    rss_bytes = by["loader_rss"][1] * 1024
    starts = 2 * floor["start_sockredir"]
    return [
        ("bulk 128 KiB writes ≥ 2.5× plain", f"{by['iperf3_131072'][2]:.2f}×", by["iperf3_131072"][2] >= 2.5,
         "see Analysis: both paths copy each byte twice"),
    ] + [
        (f"ping-pong p50 ≤ 0.8× plain ({name}, {pname})", f"{by[f'sockperf_{size}_{tag}_p50'][2]:.2f}×",
         by[f"sockperf_{size}_{tag}_p50"][2] <= 0.8,
         f"a pipe, no socket at all: {floor[f'pipe_{size}_{tag}_p50'] / by[f'sockperf_{size}_{tag}_p50'][0]:.2f}×")
        for pname, tag, _ in SOCKPERF_PLACEMENTS for name, size in SOCKPERF_SIZES
    ] + [
        ("redis GET ≥ 1.2× plain", f"{by['redis_get'][2]:.2f}×", by["redis_get"][2] >= 1.2, ""),
        ("attach+detach cycle ≥ 3× faster than bpftool's sequence", f"{cycle_speedup:.2f}× faster",
         cycle_speedup >= 3,
         f"two process starts alone: {starts:.2f} of {by['loader_cycle'][1]:.2f} ms"),
        ("peak RSS of attach ≤ 1.5 MB (1,500,000 bytes)", f"{rss_bytes / 1e6:.2f} MB", rss_bytes <= 1.5e6, ""),
    ]


def target_lines(rows, floor):
    lines = ["| target | measured | met | floor on this machine |", "|---|---:|---|---|"]
    for t, v, ok, bound in targets(rows, floor):
        lines.append(f"| {t} | {v} | {'yes' if ok else 'no'} | {bound} |")
    return lines


def cost_lines(costs):
    if len(costs) == 1 and costs[0][0] == "not measured":
        return [f"Not measured in this run: {costs[0][1]}"]
    lines = ["| workload | program | runs | ns per run |", "|---|---|---:|---:|"]
    for title, prog, runs, per_run in costs:
        lines.append(f"| {title} | `{prog}` | {runs:,} | {fmt(per_run)} |")
    return lines


def machine():
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    debian = ""
    with contextlib.suppress(OSError):
        with open("/etc/debian_version", encoding="utf-8") as f:
            debian = f"Debian {f.read().strip()}"
    u = platform.uname()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": f"{u.release} ({u.version})",
        "os": debian or u.system,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions(binary):
    def first_line(cmd, pattern=None):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (out.stdout + out.stderr).strip()
        if pattern:
            m = re.search(pattern, text)
            return m.group(0) if m else "?"
        return text.splitlines()[0] if text else "?"

    commit = first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return [
        first_line([binary, "--version"]) + f" (commit {commit}" + (", with uncommitted changes)" if dirty else ")"),
        first_line(["iperf3", "--version"], r"iperf \S+"),
        first_line(["sockperf", "--version"], r"version \S+").replace("version", "sockperf"),
        first_line(["redis-server", "--version"], r"v=\S+").replace("v=", "redis "),
        first_line(["nginx", "-v"], r"nginx/\S+"),
        first_line(["wrk", "--version"], r"wrk \S+"),
        " ".join(first_line(["bpftool", "version"], r"bpftool v\S+(?:.|\n)*?libbpf v\S+").split()),
    ]


def write_chart(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m.label + ("  [sockredir-min / bpftool]" if m.loader else "") for m, *_ in rows]
    ratios = [ratio for *_, ratio in rows]
    better = [(r > 1) == m.higher_is_better for (m, *_), r in zip(rows, ratios)]
    colors = ["#2e7d32" if b else "#c62828" for b in better]
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(rows) + 2.2))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, ratios, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("redirected / plain  (loader rows: sockredir-min / bpftool)")
    for yi, r in zip(y, ratios):
        ax.text(r, yi, f" {r:.2f}", va="center", fontsize=7)
    ax.set_xlim(0, max(ratios + [1.0]) * 1.15)
    ax.set_title(title, fontsize=10)
    fig.text(0.01, 0.01,
             "Throughput and requests/s: ratio > 1 is better. Latency, CPU time, loader time, RSS and size: "
             "ratio < 1 is better.\nGreen: sockredir better than the baseline; red: worse. "
             "Line at 1.0: no difference.", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def keep_analysis(md_path):
    """An existing '## Analysis' section of the output file is kept across runs."""
    try:
        with open(md_path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return "## Analysis\n\n(to be written)\n"
    i = text.find("\n## Analysis")
    return text[i + 1:] if i >= 0 else "## Analysis\n\n(to be written)\n"


def read_template():
    with open(TEMPLATE, encoding="utf-8") as f:
        return string.Template("".join(line for line in f if not line.startswith("%%")))


def round_columns(rounds):
    return ["| workload | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " |",
            "|---|" + "---:|" * rounds]


def write_markdown(path, rows, results, checks, info, settings, wall, sizes_info, floor_values, costs):
    mach, vers = info
    floor = {key: statistics.median(values) for key, values in floor_values.items()}
    bpftool_path, libs = sizes_info
    runs = round_columns(settings.rounds)
    for m in metrics():
        cells = [f"{fmt(p)} / {fmt(r)}" for p, r in zip(results[m.key]["plain"], results[m.key]["redirected"])]
        runs.append(f"| {m.label} | " + " | ".join(cells) + " |")
    for key, label in floors():
        runs.append(f"| floor: {label} | " + " | ".join(fmt(v) for v in floor_values[key]) + " |")
    counters = round_columns(settings.rounds)
    for t in dict.fromkeys(t for t, *_ in checks):
        cells = [f"{r:,} / {p:,}" for tt, _, r, p in checks if tt == t]
        counters.append(f"| {t} | " + " | ".join(cells) + " |")
    text = read_template().substitute(
        quick=" --quick" if settings.quick else "",
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        minutes=f"{wall / 60:.1f}",
        cpu=mach["cpu"], cores=mach["cores"], memory=mach["memory"], kernel=mach["kernel"], system=mach["os"],
        load=mach["load"],
        rounds=settings.rounds, seconds=settings.seconds, redis_requests=settings.redis_requests,
        cycles=settings.cycles,
        versions="; ".join(vers),
        results_table="\n".join(table_lines(rows)),
        targets_table="\n".join(target_lines(rows, floor)),
        floor_rows="\n".join(f"| {label} | {fmt(floor[key])} |" for key, label in floors()),
        cost_table="\n".join(cost_lines(costs)),
        cost_margin=COST_WINDOW_MARGIN,
        redis_requests_per_second=f"{REDIS_REQUESTS_PER_SECOND:,}",
        rss_cycles=RSS_CYCLES,
        bpftool_path=bpftool_path,
        libs=", ".join(f"`{os.path.basename(x)}`" for x in libs),
        runs_table="\n".join(runs),
        counters_table="\n".join(counters),
    )
    analysis = keep_analysis(path)  # read before open(path, "w") truncates it
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n" + analysis)
