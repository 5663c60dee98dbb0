"""The isolation of the run and everything it starts: a cgroup of its own with four children under the cgroup2 mount
(where sockredir-min finds it), a private bpffs mount, a fresh network namespace per workload run, the processes in
them, and cleanup() that removes all of it on every exit path (the same isolation as tools/lib/sandbox.sh, for
Python)."""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

from .base import BenchError, log, run
from .binary import cgroup2_mount

# The children of the run's cgroup: the two modes of every workload, and one per loader of the loader benchmark.
CGROUPS = ("plain", "redirected", "loader-sockredir", "loader-bpftool")


def cgroup_pids(cg):
    try:
        with open(os.path.join(cg, "cgroup.procs"), encoding="ascii") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


class Sandbox:
    """Owns everything the run creates, and removes it in cleanup()."""

    def __init__(self, binary):
        self.bin = binary
        self.procs = []  # live Popen objects of servers and clients
        self.helpers = []  # live Popen objects of helpers outside the workload (the run statistics sampler)
        self.pids = []  # live pids of the loader runs (posix_spawn)
        self.netns = set()
        self.netns_seq = 0
        self.cgroups = []  # in creation order; removed in reverse
        self.cg = {}  # name in CGROUPS: its path
        self.pin = {}  # pin dirs on the private bpffs: "redirected" and one per loader
        self.work = None
        self.bpffs = None
        self.sockredir_pins = []  # pin dirs that sockredir-min may have attached
        # Called in cleanup() after the processes are stopped, before the cgroups go: the bpftool sequence's detach.
        self.teardown_hooks = []

    # --- set-up and cleanup ------------------------------------------------------------

    def setup(self):
        self.work = tempfile.mkdtemp(prefix="sockredir-bench-")
        # nginx's workers (user nobody) read their page below it.
        os.chmod(self.work, 0o755)
        base = os.path.join(cgroup2_mount(self.bin), f"sockredir-bench-{os.getpid()}")
        os.mkdir(base)
        self.cgroups.append(base)
        for name in CGROUPS:
            path = os.path.join(base, name)
            os.mkdir(path)
            self.cgroups.append(path)
            self.cg[name] = path
        # The SMC-D runs compare another path with plain TCP: nothing of ours attached, as for plain.
        self.cg["smc"] = self.cg["plain"]
        bpffs = os.path.join(self.work, "bpffs")
        os.mkdir(bpffs)
        run(["mount", "-t", "bpf", "bpf", bpffs])
        self.bpffs = bpffs
        # libbpf (bpftool) turns '.' into '_' in pin paths: keep dots out of ours.
        if "." in bpffs:
            raise BenchError(f"the private bpffs path {bpffs} has a '.', which bpftool would rewrite")
        self.pin = {
            "redirected": os.path.join(bpffs, "sockredir"),
            "loader-sockredir": os.path.join(bpffs, "loader-sockredir"),
            "loader-bpftool": os.path.join(bpffs, "loader-bpftool"),
        }

    def cleanup(self):
        # A second signal must not interrupt the removal half-way.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for p in list(self.procs) + list(self.helpers):
            self.stop(p)
        for pid in list(self.pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.pids.clear()
        for pin in self.sockredir_pins:
            if os.path.exists(pin):
                r = subprocess.run([self.bin, "detach", "--pin-dir", pin], capture_output=True, text=True)
                if r.returncode != 0:
                    log(f"detach --pin-dir {pin} failed: {r.stderr.strip()}")
        for hook in self.teardown_hooks:
            hook()
        # What is still in our cgroups was started by this run (nothing else can enter them).
        for cg in reversed(self.cgroups):
            kill_file = os.path.join(cg, "cgroup.kill")
            if os.path.exists(kill_file) and cgroup_pids(cg):
                with contextlib.suppress(OSError):
                    with open(kill_file, "w") as f:
                        f.write("1")
        for name in list(self.netns):
            if subprocess.run(["ip", "netns", "delete", name], capture_output=True).returncode != 0:
                log(f"could not delete netns {name}")
            self.netns.discard(name)
        for cg in reversed(self.cgroups):
            for _ in range(50):
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                log(f"could not remove cgroup {cg}")
        self.cgroups.clear()
        if self.bpffs and os.path.ismount(self.bpffs):
            if subprocess.run(["umount", self.bpffs], capture_output=True).returncode != 0:
                log(f"could not unmount {self.bpffs}")
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- processes ---------------------------------------------------------------------

    def spawn(self, cmd, mode, ns, out):
        """CMD in the cgroup of MODE and the namespace NS: the child joins the cgroup, then
        execs nsenter, which execs CMD; one pid from fork to exit."""
        procs_file = os.path.join(self.cg[mode], "cgroup.procs")

        def join_cgroup():
            with open(procs_file, "w") as f:
                f.write("0")

        with open(out, "wb") as f:
            p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "--", *cmd], stdin=subprocess.DEVNULL,
                                 stdout=f, stderr=subprocess.STDOUT, preexec_fn=join_cgroup,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p):
        """TERM, up to 5 s for a clean exit, then KILL; reaps it."""
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)
        if p in self.helpers:
            self.helpers.remove(p)

    def start_helper(self, cmd, out, err):
        """CMD in the background in the bench's own cgroup and namespace, stdout to OUT and stderr to ERR; it
        outlives workload namespaces, and cleanup() stops it if it still runs."""
        with open(out, "wb") as f, open(err, "wb") as e:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=e, start_new_session=True)
        self.helpers.append(p)
        return p

    def spawn_wait(self, cmd):
        """Runs CMD to its end, stdout to /dev/null; (wall seconds, rusage). Raises on failure."""
        err = os.path.join(self.work, "timed.err")
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        t0 = time.perf_counter()
        pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=actions)
        self.pids.append(pid)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
        self.pids.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(err, encoding="utf-8", errors="replace") as f:
                raise BenchError(f"{' '.join(cmd)}: exit {code}: {f.read().strip()}")
        return elapsed, usage

    # --- namespaces and cgroups ----------------------------------------------------------

    @contextlib.contextmanager
    def namespace(self, mode):
        """A fresh network namespace with loopback up; afterwards the MODE cgroup is empty again."""
        self.netns_seq += 1
        name = f"sockredir-bench-{os.getpid()}-{self.netns_seq}"
        run(["ip", "netns", "add", name])
        self.netns.add(name)
        try:
            run(["ip", "-n", name, "link", "set", "lo", "up"])
            yield name
        finally:
            for p in list(self.procs):
                self.stop(p)
            self.empty_cgroup(self.cg[mode])
            run(["ip", "netns", "delete", name], check=False)
            self.netns.discard(name)

    def empty_cgroup(self, cg):
        # A server's children (nginx workers) leave a moment after their parent.
        for _ in range(50):
            if not cgroup_pids(cg):
                return
            time.sleep(0.1)
        with open(os.path.join(cg, "cgroup.kill"), "w") as f:
            f.write("1")
        for _ in range(50):
            if not cgroup_pids(cg):
                return
            time.sleep(0.1)
        raise BenchError(f"cgroup {cg} does not empty")

    def wait_listening(self, ns, port, what):
        for _ in range(100):
            if run(["nsenter", f"--net=/run/netns/{ns}", "--", "ss", "-Hltn", f"sport = :{port}"]).strip():
                return
            time.sleep(0.1)
        raise BenchError(f"{what} does not listen on port {port}")
