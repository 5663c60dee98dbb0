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

# Published figures of SMC-D loopback against TCP loopback, for hosts whose kernel has none (issue 11).
SMC_PUBLISHED = ("Wen Gu (Alibaba), \"net/smc: SMC intra-OS shortcut with loopback-ism\", net-next v6 00/11, "
                 "2024-04-14 (merged for Linux 6.11), <https://patchwork.kernel.org/comment/25818928>: against TCP "
                 "loopback, redis +32–36 % requests/s, nginx under wrk +51 %, sockperf throughput +63 % and latency "
                 "−42 %")

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks.md.in")


def fmt(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def median_or_nan(values):
    return statistics.median(values) if values else float("nan")


def summarize(results):
    """(metric, plain, redirected, redirected / plain, smc, smc / plain) per row; smc NaN where not run."""
    rows = []
    for m in metrics():
        plain = statistics.median(results[m.key]["plain"])
        redir = statistics.median(results[m.key]["redirected"])
        smc = median_or_nan(results[m.key].get("smc", []))
        rows.append((m, plain, redir, redir / plain if plain else float("nan"), smc,
                     smc / plain if plain else float("nan")))
    return rows


def has_smc(rows):
    return any(smc == smc for *_, smc, _ in rows)  # NaN != NaN


def table_lines(rows):
    if has_smc(rows):
        lines = ["| workload | plain | redirected | ratio | SMC-D | SMC-D / plain |", "|---|---:|---:|---:|---:|---:|"]
    else:
        lines = ["| workload | plain | redirected | ratio |", "|---|---:|---:|---:|"]
    for m, plain, redir, ratio, smc, smc_ratio in rows:
        line = f"| {m.label} | {fmt(plain)} | {fmt(redir)} | {ratio:.2f} |"
        if has_smc(rows):
            line += f" {fmt(smc)} | {smc_ratio:.2f} |" if smc == smc else " — | — |"
        lines.append(line)
    return lines


# The traffic rows "never slower" judges: throughput and requests/s (higher is better) and round-trip p50s.
def never_slower_rows(rows):
    return [r for r in rows if not r[0].loader and not r[0].key.startswith(("cpu_", "hold_", "wrk_p"))
            and not r[0].key.endswith("_p99")]


def worse_by(m, ratio):
    """How much worse than plain a ratio is, as a factor ≥ 1 when worse (throughput below, latency above)."""
    return 1 / ratio if m.higher_is_better else ratio


def targets(rows, floor, costs):
    """(target, measured, met, the floor of this machine for it or "") -- issue 11's targets."""
    by = {m.key: (plain, redir, ratio) for m, plain, redir, ratio, *_ in rows}
    cycle_speedup = by["loader_cycle"][0] / by["loader_cycle"][1]
    rss_bytes = by["loader_rss"][1] * 1024
    starts = 2 * floor["start_sockredir"]
    judged = never_slower_rows(rows)
    worst = max(judged, key=lambda r: worse_by(r[0], r[3]))
    slower = [f"{m.label.rsplit(' (', 1)[0]}: {ratio:.2f}×" for m, _, _, ratio, *_ in judged
              if worse_by(m, ratio) > 1 / 0.97]
    cpu = [r for r in rows if r[0].key.startswith("cpu_")]
    worst_cpu = max(cpu, key=lambda r: r[3])
    msg_costs = [(title, per_run) for title, prog, runs, per_run in costs if prog == "sk_msg" and runs > 0]
    worst_msg = max(msg_costs, key=lambda c: c[1]) if msg_costs else None
    out = [
        ("every traffic workload redirected ≥ 0.97× plain (throughput, requests/s; RTT p50 ≤ 1/0.97)",
         f"worst: {worst[0].label.rsplit(' (', 1)[0]}, {worst[3]:.2f}×", not slower,
         "below: " + "; ".join(slower) if slower else ""),
        ("CPU time per MB and per request never above plain", f"worst: {worst_cpu[0].label}, {worst_cpu[3]:.2f}×",
         worst_cpu[3] <= 1.0, ""),
        ("stream, 128 KiB writes ≥ 2× plain", f"{by['stream_131072'][2]:.2f}×", by["stream_131072"][2] >= 2,
         f"the two copies alone: {floor['copy_stream_131072'] / by['stream_131072'][0]:.1f}× plain"),
    ] + [
        (f"ping-pong {name}, one CPU, RTT p50 ≤ 0.6× plain", f"{by[f'pingpong_{size}_1cpu_p50'][2]:.2f}×",
         by[f"pingpong_{size}_1cpu_p50"][2] <= 0.6,
         f"a pipe, no socket at all: {floor[f'pipe_{size}_1cpu_p50'] / by[f'pingpong_{size}_1cpu_p50'][0]:.2f}×")
        for name, size in SOCKPERF_SIZES
    ] + [
        ("redis GET ≥ 1.4× plain", f"{by['redis_get'][2]:.2f}×", by["redis_get"][2] >= 1.4, ""),
        ("redis SET ≥ 1.4× plain", f"{by['redis_set'][2]:.2f}×", by["redis_set"][2] >= 1.4, ""),
        ("nginx + wrk requests/s ≥ 1.5× plain", f"{by['wrk_rps'][2]:.2f}×", by["wrk_rps"][2] >= 1.5, ""),
        ("sk_msg ≤ 150 ns per message, every workload of the cost pass",
         f"worst: {worst_msg[0]}, {worst_msg[1]:.0f} ns" if worst_msg else "not measured",
         bool(worst_msg) and worst_msg[1] <= 150, ""),
        ("attach+detach cycle ≥ 3× faster than bpftool's sequence", f"{cycle_speedup:.2f}× faster",
         cycle_speedup >= 3,
         f"two process starts alone: {starts:.2f} of {by['loader_cycle'][1]:.2f} ms"),
        ("peak RSS of attach ≤ 1.5 MB (1,500,000 bytes)", f"{rss_bytes / 1e6:.2f} MB", rss_bytes <= 1.5e6, ""),
    ]
    return out


def target_lines(rows, floor, costs):
    lines = ["| target | measured | met | floor on this machine |", "|---|---:|---|---|"]
    for t, v, ok, bound in targets(rows, floor, costs):
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
    ratios = [r[3] for r in rows]
    smc = [r[5] for r in rows]
    better = [(r > 1) == m.higher_is_better for (m, *_), r in zip(rows, ratios)]
    colors = ["#2e7d32" if b else "#c62828" for b in better]
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(rows) + 2.2))
    y = list(range(len(rows)))[::-1]
    height = 0.4 if has_smc(rows) else 0.8
    ax.barh([yi + (height / 2 if has_smc(rows) else 0) for yi in y], ratios, height=height, color=colors)
    if has_smc(rows):
        ax.barh([yi - height / 2 for yi in y], [v if v == v else 0 for v in smc], height=height, color="#9e9e9e",
                label="SMC-D loopback / plain")
        ax.legend(loc="lower right", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("redirected / plain  (loader rows: sockredir-min / bpftool)")
    for yi, r in zip(y, ratios):
        ax.text(r, yi + (height / 2 if has_smc(rows) else 0), f" {r:.2f}", va="center", fontsize=7)
    ax.set_xlim(0, max(ratios + [v for v in smc if v == v] + [1.0]) * 1.15)
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


def smc_text(rows, reason):
    if has_smc(rows):
        return ("This kernel has SMC-D loopback: the event-driven workloads also ran over it (both sockets opened "
                "with `IPPROTO_SMC`, in the plain cgroup), the columns SMC-D and SMC-D / plain above. redis and "
                "nginx would need smc-tools' preload library and are not run over it. For comparison, the "
                f"published figures: {SMC_PUBLISHED}.")
    return (f"Not measured here: {reason}. The published figures, for comparison with the ratios above: "
            f"{SMC_PUBLISHED}. An SMC connection needs both applications opted in (`IPPROTO_SMC`, or smc-tools' "
            "`smc_run` preload); sockredir needs nothing of them.")


def write_markdown(path, rows, results, checks, info, settings, wall, sizes_info, floor_values, costs,
                   smc_reason=""):
    mach, vers = info
    floor = {key: statistics.median(values) for key, values in floor_values.items()}
    bpftool_path, libs = sizes_info
    runs = round_columns(settings.rounds)
    for m in metrics():
        cells = [f"{fmt(p)} / {fmt(r)}" for p, r in zip(results[m.key]["plain"], results[m.key]["redirected"])]
        if results[m.key].get("smc"):
            cells = [f"{c} / {fmt(v)}" for c, v in zip(cells, results[m.key]["smc"])]
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
        targets_table="\n".join(target_lines(rows, floor, costs)),
        smc_text=smc_text(rows, smc_reason),
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
