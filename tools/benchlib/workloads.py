"""The traffic workloads (the event-driven stream, ping-pong and stopped reader of tools/bench-data/evloop.c,
iperf3, sockperf, redis-benchmark, nginx + wrk), each run once in a mode and a fresh namespace and returning {metric
key: value}; the rounds that alternate them plain and redirected (and over SMC-D loopback where the kernel has it);
the floors; and the untimed pass that measures what our programs cost per run."""

import gzip
import json
import os
import platform
import re
import socket
import subprocess

from . import binary as sockredir
from .base import ROOT, BenchError, log, run
from .config import (COST_JOBS, COST_PROGRAMS, COST_WINDOW_MARGIN, HOLD_SIZES, HTTP_PORT, IPERF_PORT, IPERF_SIZES,
                     REDIS_PORT, REDIS_REQUESTS_PER_SECOND, SOCKPERF_PLACEMENTS, SOCKPERF_PORT, SOCKPERF_SIZES,
                     STREAM_SIZES)

IPPROTO_SMC = 256  # linux/in.h (6.8+); older kernels open SMC sockets as AF_SMC only


def kernel_config():
    """The running kernel's build configuration as text, from /proc/config.gz or /boot/config-RELEASE; None if
    neither is there."""
    try:
        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{platform.release()}", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def smc_loopback():
    """(True, "") where connections on this host can take SMC-D loopback (CONFIG_SMC_LO, Linux 6.11+, and
    IPPROTO_SMC sockets open), else (False, why not)."""
    config = kernel_config()
    release = platform.release()
    if config is not None and not re.search(r"^CONFIG_SMC_LO=y", config, re.M):
        has_smc = re.search(r"^CONFIG_SMC=[ym]", config, re.M)
        return False, (f"Linux {release} is built without SMC-D loopback (CONFIG_SMC_LO"
                       + (" is not set" if has_smc else ", and without SMC at all") + ")")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SMC).close()
    except OSError as e:
        return False, f"Linux {release} opens no IPPROTO_SMC socket: {e.strerror}"
    if config is None:
        return False, f"Linux {release} opens IPPROTO_SMC sockets, but its configuration (CONFIG_SMC_LO) is unknown"
    return True, ""


def cpu_busy_seconds():
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq; not idle, iowait or steal),
    in seconds, from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wrk_usec(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


class Workloads:
    """The traffic side of the run, in the sandbox's "plain" and "redirected" cgroups."""

    def __init__(self, sandbox, settings):
        self.sb = sandbox
        self.s = settings
        self.client_cpu = 0.0  # busy CPU seconds of the machine during the last client() run
        self.pipe_floor = None
        self.evloop = None
        self.smc, self.smc_reason = smc_loopback()

    @property
    def work(self):
        return self.sb.work

    def client(self, cmd, mode, ns, name):
        """Runs a client to its end (bounded: its own length + 60 s); its output."""
        out = os.path.join(self.work, f"{name}.out")
        busy = cpu_busy_seconds()
        p = self.sb.spawn(cmd, mode, ns, out)
        try:
            p.wait(timeout=self.s.seconds + 60)
        except subprocess.TimeoutExpired as e:
            self.sb.stop(p)
            raise BenchError(f"{cmd[0]} ({mode}) did not finish in time") from e
        # CPU time of the whole machine while the client ran: both ends, the kernel's work for them, and
        # whatever else runs (little: the benchmark itself waits).
        self.client_cpu = cpu_busy_seconds() - busy
        self.sb.procs.remove(p)
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if p.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} ({mode}) exited {p.returncode}:\n{text[-2000:]}")
        return text

    # --- sockredir counters ------------------------------------------------------------

    def counters(self):
        return sockredir.counters(self.sb.bin, self.sb.pin["redirected"])

    def cost_job(self, job, ns):
        """One run of a COST_JOBS job, redirected."""
        if job == "redis":
            # redis-benchmark runs a number of requests, not seconds: few enough for its two tests to end inside
            # the window whatever this machine's rate (the cost per program run does not depend on how many).
            return self.redis("redirected", ns, requests=REDIS_REQUESTS_PER_SECOND * self.s.seconds // 8)
        if job == "nginx":
            return self.nginx("redirected", ns)
        kind, size, *tag = job.split("_")
        if kind == "stream":
            return self.stream("redirected", ns, int(size))
        cpus = {t: c for _, t, c in SOCKPERF_PLACEMENTS}[tag[0]]
        return self.pingpong("redirected", ns, int(size), tag[0], cpus)

    def cost_pass(self, costs):
        """Untimed, after the rounds: what our programs cost per run, from the kernel's run statistics, which
        sockredir-min holds on for a window around each run (status --json --sample). A pass of its own because the
        statistics add two clock reads to every program run, which the timed runs must not pay."""
        window = self.s.seconds + COST_WINDOW_MARGIN
        for title, job in COST_JOBS:
            log(f"program cost: {title}, redirected, with BPF run statistics on")
            with sockredir.RunStatsSample(self.sb, self.sb.pin["redirected"], window) as sample:
                with self.sb.namespace("redirected") as ns:
                    self.cost_job(job, ns)
            for prog in COST_PROGRAMS:
                if prog not in sample.programs:
                    continue
                runs = sample.programs[prog]["runs"]
                ns_total = sample.programs[prog]["run_time_ns"]
                costs.append((title, prog, runs, ns_total / runs if runs else float("nan")))

    # --- the workloads: each runs once in MODE and returns {metric key: value} ---------------

    def evloop_cmd(self, mode, *args):
        return [self.evloop, *args] + (["smc"] if mode == "smc" else [])

    def stream(self, mode, ns, size):
        out = self.client(self.evloop_cmd(mode, "stream", str(size), str(self.s.seconds)), mode, ns, "stream")
        rate, total = out.split()
        return {f"stream_{size}": float(rate) * 8 / 1e9, f"cpu_stream_{size}": self.client_cpu * 1e12 / int(total)}

    def pingpong(self, mode, ns, size, tag, cpus):
        out = self.client(self.evloop_cmd(mode, "pingpong", str(size), str(self.s.seconds), *cpus), mode, ns,
                          "pingpong")
        p50, p99, trips = out.split()
        if int(trips) < 100:
            raise BenchError(f"evloop pingpong {size} {tag} ({mode}): only {trips} round trips")
        return {f"pingpong_{size}_{tag}_p50": float(p50), f"pingpong_{size}_{tag}_p99": float(p99)}

    def hold(self, mode, ns, size):
        out = self.client(self.evloop_cmd(mode, "hold", str(size)), mode, ns, "hold")
        queued, mem = out.split()
        return {f"hold_{size}_queued": int(queued) / 1024, f"hold_{size}_mem": max(int(mem), 0) / 1024}

    def iperf3(self, mode, ns, size):
        server = self.sb.spawn(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(IPERF_PORT)], mode, ns,
                               os.path.join(self.work, "iperf3-server.out"))
        self.sb.wait_listening(ns, IPERF_PORT, "iperf3 -s")
        out = self.client(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-t", str(self.s.seconds),
                           "-l", str(size), "-J"], mode, ns, "iperf3-client")
        self.sb.stop(server)
        end = json.loads(out)["end"]
        received_mb = end["sum_received"]["bytes"] / 1e6
        return {f"iperf3_{size}": end["sum_received"]["bits_per_second"] / 1e9,
                f"cpu_iperf3_{size}": self.client_cpu * 1e6 / received_mb}

    def sockperf(self, mode, ns, size, tag, cpus):
        server = self.sb.spawn(["taskset", "-c", cpus[0], "sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p",
                                str(SOCKPERF_PORT)], mode, ns, os.path.join(self.work, "sockperf-server.out"))
        self.sb.wait_listening(ns, SOCKPERF_PORT, "sockperf sr")
        out = self.client(["taskset", "-c", cpus[1], "sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p",
                           str(SOCKPERF_PORT), "-m", str(size), "-t", str(self.s.seconds), "--full-rtt"], mode, ns,
                          "sockperf-client")
        self.sb.stop(server)
        # "sockperf: ---> percentile 50.000 =    9.876" (µs; round trips, with --full-rtt)
        pct = {float(a): float(b) for a, b in re.findall(r"---> percentile\s+([0-9.]+)\s*=\s*([0-9.]+)", out)}
        if 50.0 not in pct or 99.0 not in pct:
            raise BenchError(f"sockperf ({mode}): no p50/p99 in its output:\n{out[-2000:]}")
        if "usec" not in out:
            raise BenchError(f"sockperf ({mode}): output not in usec:\n{out[-2000:]}")
        return {f"sockperf_{size}_{tag}_p50": pct[50.0], f"sockperf_{size}_{tag}_p99": pct[99.0]}

    def redis(self, mode, ns, requests=None):
        requests = requests or self.s.redis_requests
        data = os.path.join(self.work, "redis")
        os.makedirs(data, exist_ok=True)
        server = self.sb.spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--dir", data,
                                "--save", "", "--appendonly", "no", "--daemonize", "no"], mode, ns,
                               os.path.join(self.work, "redis-server.out"))
        self.sb.wait_listening(ns, REDIS_PORT, "redis-server")
        out = self.client(["redis-benchmark", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "-c", "50",
                           "-n", str(requests), "-t", "set,get", "--csv"], mode, ns, "redis-benchmark")
        self.sb.stop(server)
        # "SET","123456.79","0.215",... : test name and requests/s.
        rps = dict(re.findall(r'^"(SET|GET)","([0-9.]+)"', out, re.M))
        if set(rps) != {"SET", "GET"}:
            raise BenchError(f"redis-benchmark ({mode}): no SET and GET results:\n{out[-2000:]}")
        return {"redis_get": float(rps["GET"]), "redis_set": float(rps["SET"]),
                "cpu_redis": self.client_cpu * 1e6 / (2 * requests)}

    def nginx_files(self):
        ngx = os.path.join(self.work, "nginx")
        if os.path.isdir(ngx):
            return ngx
        os.makedirs(os.path.join(ngx, "tmp"))
        www = os.path.join(self.work, "www")
        os.makedirs(www)
        with open(os.path.join(www, "page.txt"), "wb") as f:
            f.write(b"x" * 16384)
        os.chmod(os.path.join(www, "page.txt"), 0o644)
        os.chmod(www, 0o755)
        temps = "\n".join(f"    {kind}_temp_path {ngx}/tmp/{kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # Debian's usual sendfile and keep-alive, everything else private; no "deferred"
        # on listen (see README: TCP_DEFER_ACCEPT keeps the client's direction on TCP).
        conf = f"""daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temps}
    server {{
        listen 127.0.0.1:{HTTP_PORT};
        root {www};
    }}
}}
"""
        with open(os.path.join(ngx, "nginx.conf"), "w", encoding="utf-8") as f:
            f.write(conf)
        return ngx

    def nginx(self, mode, ns):
        ngx = self.nginx_files()
        server = self.sb.spawn(["nginx", "-e", f"{ngx}/error.log", "-p", ngx, "-c", f"{ngx}/nginx.conf"], mode, ns,
                               os.path.join(self.work, "nginx.out"))
        self.sb.wait_listening(ns, HTTP_PORT, "nginx")
        out = self.client(["wrk", "-t", "2", "-c", "32", "-d", f"{self.s.seconds}s", "--latency",
                           f"http://127.0.0.1:{HTTP_PORT}/page.txt"], mode, ns, "wrk")
        self.sb.stop(server)
        rps = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
        total = re.search(r"^\s*([0-9]+) requests in ", out, re.M)
        lat = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+(?:us|ms|s))\s*$", out, re.M))
        if not rps or not total or set(lat) != {"50", "99"}:
            raise BenchError(f"wrk ({mode}): no requests/s or latency distribution:\n{out[-2000:]}")
        if re.search(r"Socket errors|Non-2xx", out):
            raise BenchError(f"wrk ({mode}) counted errors:\n{out[-2000:]}")
        return {"wrk_rps": float(rps.group(1)), "wrk_p50": wrk_usec(lat["50"]), "wrk_p99": wrk_usec(lat["99"]),
                "cpu_wrk": self.client_cpu * 1e6 / int(total.group(1))}

    def traffic_round(self, rnd, results, checks):
        """One round: every traffic workload, plain then redirected, then over SMC-D loopback where the kernel has
        it (the event-driven workloads only: redis and nginx would need smc-tools' preload library)."""
        smc = ("smc",) if self.smc else ()
        jobs = [(f"stream, {name} writes", smc, lambda m, ns, sz=size: self.stream(m, ns, sz))
                for name, size in STREAM_SIZES]
        jobs += [(f"ping-pong {name}, {pname}", smc,
                  lambda m, ns, sz=size, t=tag, c=cpus: self.pingpong(m, ns, sz, t, c))
                 for pname, tag, cpus in SOCKPERF_PLACEMENTS for name, size in SOCKPERF_SIZES]
        jobs += [(f"reader stops, {name} writes", smc, lambda m, ns, sz=size: self.hold(m, ns, sz))
                 for name, size in HOLD_SIZES]
        jobs += [(f"iperf3 -l {name}", (), lambda m, ns, sz=size: self.iperf3(m, ns, sz))
                 for name, size in IPERF_SIZES]
        jobs += [(f"sockperf pp -m {size}, {pname}", (),
                  lambda m, ns, sz=size, t=tag, c=cpus: self.sockperf(m, ns, sz, t, c))
                 for pname, tag, cpus in SOCKPERF_PLACEMENTS for _, size in SOCKPERF_SIZES]
        jobs += [("redis-benchmark", (), self.redis), ("nginx + wrk", (), self.nginx)]
        for title, extra, job in jobs:
            for mode in ("plain", "redirected", *extra):
                log(f"round {rnd}/{self.s.rounds}: {title}, {mode}")
                before = self.counters()
                with self.sb.namespace(mode) as ns:
                    values = job(mode, ns)
                after = self.counters()
                redirected, passed = after[0] - before[0], after[1] - before[1]
                if mode != "redirected" and (redirected or passed):
                    raise BenchError(f"{title}: the {mode} run moved sockredir's counters")
                if mode == "redirected":
                    checks.append((title, rnd, redirected, passed))
                    if redirected == 0:
                        log(f"warning: {title}: no message redirected in the redirected run")
                for key, value in values.items():
                    results[key][mode].append(value)

    # --- the floor: the same ping-pong with no socket at all -----------------------------

    def build_tools(self):
        """tools/bench-data's programs, built for this run: pipe_floor.c, the ping-pong floor without sockets, and
        evloop.c, the event-driven workloads and the stream's floor."""
        self.pipe_floor = os.path.join(self.work, "pipe_floor")
        self.evloop = os.path.join(self.work, "evloop")
        for exe in (self.pipe_floor, self.evloop):
            run(["clang", "-O2", "-Wall", "-Werror", "-o", exe,
                 os.path.join(ROOT, "tools", "bench-data", os.path.basename(exe) + ".c")], timeout=120)

    def floor_round(self, rnd, floors):
        """The pipe ping-pong with sockperf's sizes and placements: one copy in, one copy out and one
        wakeup per hop, nothing else."""
        log(f"round {rnd}/{self.s.rounds}: floors (pipe ping-pong)")
        for _, tag, cpus in SOCKPERF_PLACEMENTS:
            for _, size in SOCKPERF_SIZES:
                out = run([self.pipe_floor, cpus[0], cpus[1], str(size), str(self.s.seconds)],
                          timeout=self.s.seconds + 60)
                p50, p99, trips = out.split()
                if int(trips) < 100:
                    raise BenchError(f"pipe_floor {cpus} {size}: only {trips} round trips")
                floors[f"pipe_{size}_{tag}_p50"].append(float(p50))
                floors[f"pipe_{size}_{tag}_p99"].append(float(p99))
        for _, size in STREAM_SIZES:
            rate, _total = run([self.evloop, "stream", str(size), str(self.s.seconds), "copy"],
                               timeout=self.s.seconds + 60).split()
            floors[f"copy_stream_{size}"].append(float(rate) * 8 / 1e9)
