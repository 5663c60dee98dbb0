"""What the bench asks sockredir-min, and the one place that reads its answers:
  check                                  where cgroup2 is mounted (the binary's rule, not a second parser)
  status --json                          the counters of the attachment
  status --json --sample SECONDS         our programs' run statistics over a window (the binary holds
                                         BPF_ENABLE_STATS; the bench makes no bpf(2) call of its own)"""

import json
import os
import subprocess
import time

from .base import BenchError, run

# check's line for cgroup2: the name, padding, then the state and its detail ("ok: mounted at PATH").
CGROUP2_FEATURE = "cgroup2 (mounted or mountable)"
CGROUP2_MOUNTED = "ok: mounted at "

# What /proc/PID/fd/N of the fd from BPF_ENABLE_STATS links to (kernel/bpf/syscall.c, anon_inode_getfd).
STATS_FD_LINK = "anon_inode:bpf-stats"


def cgroup2_mount(binary):
    """The cgroup2 mount point as sockredir-min finds it (loader/ebpf/mounts.cpp: the first cgroup2 mounted at its
    root, octal escapes decoded), from the detail of check's cgroup2 line, so that the bench's cgroups are where the
    binary looks. check exits 1 when another feature is missing; its cgroup2 line is there all the same."""
    try:
        p = subprocess.run([binary, "check"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"{binary} check: {e}") from e
    for line in p.stdout.splitlines():
        if line.startswith(CGROUP2_FEATURE + " "):
            state = line[len(CGROUP2_FEATURE):].lstrip(" ")
            if state.startswith(CGROUP2_MOUNTED + "/"):
                return state[len(CGROUP2_MOUNTED):]
            raise BenchError(f"no cgroup2 mount ({binary} check: {state})")
    raise BenchError(f"no cgroup2 line in the output of {binary} check (exit {p.returncode}): "
                     f"{(p.stderr or p.stdout).strip()[-500:]}")


def status(binary, pin_dir):
    """`status --json` of the attachment pinned in PIN_DIR."""
    return json.loads(run([binary, "status", "--pin-dir", pin_dir, "--json"]))


def counters(binary, pin_dir):
    """(messages redirected, messages passed to TCP) so far."""
    c = status(binary, pin_dir)["counters"]
    return c["messages_redirected"], c["messages_passed"]


def holds_stats_fd(pid):
    """Whether process PID holds a BPF_ENABLE_STATS fd, i.e. the kernel's run statistics are on for it."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return False
    for name in names:
        try:
            if os.readlink(os.path.join(fd_dir, name)) == STATS_FD_LINK:
                return True
        except OSError:
            pass  # closed in between
    return False


class RunStatsSample:
    """`status --json --sample SECONDS` around a block: on entry the sampler starts and the block waits until it
    holds the statistics fd (its first reading follows at once, before the block can start any traffic); on exit
    the block must have ended inside the window, and `programs` is the sample's {"sock_ops": {"runs": N,
    "run_time_ns": T, ...}, "sk_msg": {...}}."""

    def __init__(self, sandbox, pin_dir, seconds):
        self.sb = sandbox
        self.cmd = [sandbox.bin, "status", "--pin-dir", pin_dir, "--json", "--sample", str(seconds)]
        self.seconds = seconds
        self.out = os.path.join(sandbox.work, "sample.out")
        self.err = os.path.join(sandbox.work, "sample.err")
        self.p = None
        self.on = None
        self.programs = None

    def failure(self, what):
        with open(self.err, encoding="utf-8", errors="replace") as f:
            detail = f.read().strip()
        return BenchError(f"{' '.join(self.cmd)}: {what}" + (f": {detail}" if detail else ""))

    def __enter__(self):
        self.p = self.sb.start_helper(self.cmd, self.out, self.err)
        deadline = time.monotonic() + 5
        while not holds_stats_fd(self.p.pid):
            if self.p.poll() is not None:
                self.sb.stop(self.p)
                raise self.failure(f"exit {self.p.returncode} before the run statistics were on")
            if time.monotonic() > deadline:
                self.sb.stop(self.p)
                raise self.failure("the run statistics were not on after 5 s")
            time.sleep(0.01)
        self.on = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb):
        # The second reading comes SECONDS after the statistics went on, which was at most one poll before
        # self.on: the block must be over by then, with a tenth of a second to spare.
        took = time.monotonic() - self.on
        if exc_type is not None:
            self.sb.stop(self.p)
            return False
        if took + 0.1 > self.seconds:
            self.sb.stop(self.p)
            raise BenchError(f"the sampled run took {took:.1f} s, longer than the {self.seconds} s window of "
                             f"{' '.join(self.cmd)}")
        if self.p.poll() is not None:
            self.sb.stop(self.p)
            raise self.failure(f"exit {self.p.returncode} before the end of its window")
        try:
            self.p.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired as e:
            raise self.failure(f"still no sample {self.seconds + 30} s later") from e
        finally:
            self.sb.stop(self.p)  # reaped (or stopped); off the helper list
        if self.p.returncode != 0:
            raise self.failure(f"exit {self.p.returncode}")
        with open(self.out, encoding="utf-8") as f:
            text = f.read()
        try:
            sample = json.loads(text)
            programs = sample["programs"]
            for prog in ("sock_ops", "sk_msg"):
                int(programs[prog]["runs"]), int(programs[prog]["run_time_ns"])
        except (ValueError, KeyError, TypeError) as e:
            raise BenchError(f"{' '.join(self.cmd)}: not the sample JSON ({e}): {text.strip()[:500]}") from e
        if sample.get("window_s") != self.seconds:
            raise BenchError(f"{' '.join(self.cmd)}: a window of {sample.get('window_s')} s, not {self.seconds} s")
        self.programs = programs
        return False
