"""The loader benchmark: `sockredir-min attach` + `detach` against the bpftool command sequence that does the same
job, on the sandbox's "loader-sockredir" and "loader-bpftool" cgroups: the wall time of each, the peak RSS of
attach, process starts alone, and the size on disk."""

import os
import re
import shutil
import statistics
import time

from .base import ROOT, BenchError, log, run
from .config import RSS_CYCLES


class Loaders:
    def __init__(self, sandbox, settings):
        self.sb = sandbox
        self.s = settings
        self.bin = sandbox.bin
        self.bpftool_obj = None
        self.bpftool_attached = None  # (cgroup, pin dir) while the bpftool sequence is attached
        self.measure_rss = False  # loader commands under /usr/bin/time (see timed())
        sandbox.teardown_hooks.append(self.teardown)

    @property
    def work(self):
        return self.sb.work

    def teardown(self):
        """From the sandbox's cleanup: the bpftool sequence off its cgroup if a failure left it on."""
        if self.bpftool_attached:
            self.bpftool_detach(*self.bpftool_attached, check=False)

    def timed(self, cmd):
        """(wall seconds, peak RSS in KiB) of CMD. With self.measure_rss the wall time is not
        meaningful: CMD then runs under GNU time, whose %M is the child's ru_maxrss. (Our own
        wait4 would not do: posix_spawn's vfork child execs out of this Python process's memory,
        and the kernel carries that memory's peak into the child's ru_maxrss. time forks from a
        small process, whose anonymous memory is far below what it measures.)"""
        if not self.measure_rss:
            return self.sb.spawn_wait(cmd)[0], 0
        out = os.path.join(self.work, "rss.out")
        elapsed, _ = self.sb.spawn_wait(["/usr/bin/time", "-f", "%M", "-o", out, *cmd])
        with open(out, encoding="ascii") as f:
            return elapsed, int(f.read().split()[-1])

    def build_bpftool_object(self):
        """The object sockredir-min embeds, built without the two programs this host's kernel refuses (the fexit
        observer, the eviction iterator: bpftool prog loadall cannot leave them out): the build's
        sockredir_loadall.bpf.o. Its maps are BTF-defined, as libbpf declares them, and its programs are the ones
        attach loads here, so both loaders load the same."""
        obj = os.path.join(os.path.dirname(self.bin), "sockredir_loadall.bpf.o")
        if not os.path.isfile(obj):
            raise BenchError(f"{obj}: the BPF object is not built (ninja -C build)")
        self.bpftool_obj = obj

    def bpftool_attach(self, cg, pin):
        """Load and pin programs and maps, sk_msg on the sockhash, sock_ops on the cgroup."""
        self.bpftool_attached = (cg, pin)
        steps = [
            ["bpftool", "prog", "loadall", self.bpftool_obj, pin, "pinmaps", pin],
            ["bpftool", "prog", "attach", "pinned", f"{pin}/sockredir_msg", "msg_verdict",
             "pinned", f"{pin}/sock_hash"],
            ["bpftool", "cgroup", "attach", cg, "sock_ops", "pinned", f"{pin}/sockredir_sockops", "multi"],
        ]
        return [self.timed(cmd) for cmd in steps]

    def bpftool_detach(self, cg, pin, check=True):
        """The reverse: sock_ops off the cgroup, sk_msg off the map, the pins removed."""
        steps = [
            ["bpftool", "cgroup", "detach", cg, "sock_ops", "pinned", f"{pin}/sockredir_sockops"],
            ["bpftool", "prog", "detach", "pinned", f"{pin}/sockredir_msg", "msg_verdict",
             "pinned", f"{pin}/sock_hash"],
        ]
        timings = []
        for cmd in steps:
            try:
                timings.append(self.timed(cmd))
            except BenchError:
                if check:
                    raise
        # rm of the pins, done here in-process: no process start charged to bpftool.
        t0 = time.perf_counter()
        if os.path.isdir(pin):
            for entry in os.listdir(pin):
                os.unlink(os.path.join(pin, entry))
            os.rmdir(pin)
        timings.append((time.perf_counter() - t0, 0))
        self.bpftool_attached = None
        return timings

    def sockredir_cycle(self):
        cg, pin = self.sb.cg["loader-sockredir"], self.sb.pin["loader-sockredir"]
        if pin not in self.sb.sockredir_pins:
            self.sb.sockredir_pins.append(pin)
        t_att, rss_att = self.timed([self.bin, "attach", "--cgroup", cg, "--pin-dir", pin])
        t_det, _ = self.timed([self.bin, "detach", "--pin-dir", pin])
        return t_att, t_det, rss_att

    def bpftool_cycle(self):
        cg, pin = self.sb.cg["loader-bpftool"], self.sb.pin["loader-bpftool"]
        att = self.bpftool_attach(cg, pin)
        det = self.bpftool_detach(cg, pin)
        return sum(t for t, _ in att), sum(t for t, _ in det), max(r for _, r in att + det)

    def check_bpftool_sequence(self):
        """Once, untimed: the sequence attaches what sockredir-min attaches."""
        cg, pin = self.sb.cg["loader-bpftool"], self.sb.pin["loader-bpftool"]
        self.bpftool_attach(cg, pin)
        shown = run(["bpftool", "cgroup", "show", cg])
        if "sockredir_sockops" not in shown or "sock_ops" not in shown:
            raise BenchError(f"bpftool cgroup attach did not attach sock_ops to {cg}:\n{shown}")
        pins = sorted(os.listdir(pin))
        for name in ("sock_hash", "counters", "config", "sock_state", "flows", "learned", "sockredir_msg",
                     "sockredir_sockops", "sockredir_observe_tp"):
            if name not in pins:
                raise BenchError(f"bpftool prog loadall pinned no {name} (pins: {pins})")
        self.bpftool_detach(cg, pin)
        if run(["bpftool", "cgroup", "show", cg]).strip():
            raise BenchError(f"bpftool cgroup detach left a program on {cg}")

    def loader_round(self, rnd, results, floors):
        log(f"round {rnd}/{self.s.rounds}: loader, {self.s.cycles} attach+detach cycles each, interleaved")
        # One untimed warm-up cycle each (page cache, first-use kernel paths).
        self.sockredir_cycle()
        self.bpftool_cycle()
        per = {"plain": [], "redirected": []}  # plain: bpftool, redirected: sockredir-min
        starts = {"start_sockredir": [], "start_bpftool": []}
        for _ in range(self.s.cycles):
            per["redirected"].append(self.sockredir_cycle())
            per["plain"].append(self.bpftool_cycle())
            # What one process start costs either tool before it does any work.
            starts["start_sockredir"].append(self.sb.spawn_wait([self.bin, "--version"])[0] * 1e3)
            starts["start_bpftool"].append(self.sb.spawn_wait(["bpftool", "version"])[0] * 1e3)
        for key, values in starts.items():
            floors[key].append(statistics.median(values))
        for mode, cycles in per.items():
            results["loader_cycle"][mode].append(statistics.median((a + d) * 1e3 for a, d, _ in cycles))
            results["loader_attach"][mode].append(statistics.median(a * 1e3 for a, _, _ in cycles))
            results["loader_detach"][mode].append(statistics.median(d * 1e3 for _, d, _ in cycles))
        # Peak RSS in cycles of their own, untimed: each command under /usr/bin/time.
        self.measure_rss = True
        try:
            rss = {"plain": [], "redirected": []}
            for _ in range(min(RSS_CYCLES, self.s.cycles)):
                rss["redirected"].append(self.sockredir_cycle()[2])
                rss["plain"].append(self.bpftool_cycle()[2])
        finally:
            self.measure_rss = False
        for mode, values in rss.items():
            results["loader_rss"][mode].append(statistics.median(values))

    def sizes(self, results):
        """Stripped copies: sockredir-min alone; bpftool and every shared library it loads."""
        def stripped_kib(path, name):
            copy = os.path.join(self.work, name)
            run(["strip", "--strip-all", "-o", copy, os.path.realpath(path)])
            return os.path.getsize(copy) / 1024

        ours = stripped_kib(self.bin, "sockredir-min.stripped")
        bpftool = shutil.which("bpftool")
        libs = re.findall(r"(/\S+) \(0x", run(["ldd", bpftool]))
        theirs = stripped_kib(bpftool, "bpftool.stripped")
        for i, lib in enumerate(libs):
            theirs += stripped_kib(lib, f"lib{i}.stripped")
        results["loader_size"]["plain"].append(theirs)
        results["loader_size"]["redirected"].append(ours)
        return bpftool, libs
