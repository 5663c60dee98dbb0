#!/usr/bin/python3
"""The Debian package, end to end: tools/package.sh builds it from a clean clone, lintian finds no error, apt-get
installs it, the unit's service accelerates a workload, apt-get remove stops it and leaves nothing behind.

package.py ROOT. The service runs on this test's own cgroup and pin dir, never the host's root cgroup: where
systemd runs, a drop-in in /run points the unit there before the install starts it; where it does not (PID 1 is
not systemd), that part says SKIP and the unit's own ExecStart line is run as systemd would run it, with the same
two options added. A package already installed on this host is left alone (SKIP). Exits 0, 1 or 77.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import observe  # noqa: E402  (the sandbox, the peers and the checks)

SKIP = 77
DROPIN_DIR = "/run/systemd/system/sockredir.service.d"
DROPIN = os.path.join(DROPIN_DIR, "50-sockredir-test.conf")
EXPECTED = {
    "./usr/sbin/sockredir-min", "./lib/systemd/system/sockredir.service",
    "./usr/share/man/man8/sockredir-min.8.gz", "./usr/share/bash-completion/completions/sockredir-min",
    "./usr/share/doc/sockredir/copyright", "./usr/share/doc/sockredir/changelog.gz",
    "./usr/share/lintian/overrides/sockredir",
}


def run(*argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    return subprocess.run(argv, **kw)


def installed():
    r = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "sockredir")
    return r.returncode == 0 and r.stdout.startswith("ii")


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = argv[1]
    if os.geteuid() != 0:
        print("SKIP: needs root (apt-get, bpf, cgroups)")
        return SKIP
    for tool in ("dpkg-deb", "lintian", "apt-get", "git"):
        if run("which", tool).returncode != 0:
            print(f"SKIP: {tool} not installed (run tools/setup.sh)")
            return SKIP
    if installed():
        print("SKIP: a sockredir package is installed on this host already; left alone")
        return SKIP

    out = tempfile.mkdtemp(prefix="sockredir-package-")
    sb = None
    service = None
    try:
        r = run(os.path.join(root, "tools/package.sh"), out)
        deb = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        observe.check(r.returncode == 0 and deb.endswith(".deb") and os.path.isfile(deb),
                      f"tools/package.sh builds it and prints its path last ({os.path.basename(deb)})"
                      + ("" if r.returncode == 0 else f": {r.stderr[-2000:]}"))
        files = {line.split()[-1] for line in run("dpkg-deb", "-c", deb).stdout.splitlines()
                 if not line.split()[-1].endswith("/")}
        observe.check(files == EXPECTED, f"it holds the binary, the unit, the man page, the completion, the docs "
                      f"({sorted(files ^ EXPECTED)} differ)")
        control = run("dpkg-deb", "-f", deb).stdout
        observe.check("Package: sockredir" in control and re.search(r"^Version: \d+\.\d+\.\d+$", control, re.M),
                      "its control file names it and its version")
        r = run("lintian", "--fail-on", "error", "--no-tag-display-limit", deb)
        tags = [line for line in r.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
        for t in tags:
            print(f"  lintian: {t}")
        observe.check(r.returncode == 0 and not any(t.startswith("E: ") for t in tags),
                      f"lintian: no error ({len(tags)} tags of lower severity)")

        sb = observe.Sandbox(os.path.join(root, "build/sockredir-min"))
        sb.bin = "/usr/sbin/sockredir-min"  # from here on, the installed binary
        ours = ["--cgroup", sb.cg, "--pin-dir", sb.pin]
        if systemd_running():
            # Before the install, whose postinst starts the unit: on this test's cgroup and pin dir only.
            os.makedirs(DROPIN_DIR, exist_ok=True)
            with open(DROPIN, "w", encoding="utf-8") as f:
                f.write("[Service]\nExecStart=\nExecStart=/usr/sbin/sockredir-min run " + shlex.join(ours) + "\n")
        r = run("apt-get", "install", "-y", "--no-install-recommends", deb,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        observe.check(r.returncode == 0 and installed(), "apt-get install ./that.deb installs it"
                      + ("" if r.returncode == 0 else f": {r.stderr[-2000:]}"))
        observe.check(all(os.path.exists(f[1:]) for f in EXPECTED) and
                      run("/usr/sbin/sockredir-min", "--version").stdout.split()[-1] in control,
                      "its files are in place, and the binary is the package's version")
        unit = open("/lib/systemd/system/sockredir.service", encoding="utf-8").read()
        observe.check("ExecStart=/usr/sbin/sockredir-min run" in unit and "@" not in unit,
                      "the unit runs /usr/sbin/sockredir-min")

        if systemd_running():
            active = observe.wait_for("active", lambda: run("systemctl", "is-active", "sockredir").stdout.strip()
                                      == "active" and os.path.exists(sb.pin), 20)
            observe.check(active, "the install started the unit, attached to this test's cgroup")
        else:
            pid1 = open("/proc/1/comm", encoding="ascii").read().strip()
            print(f"SKIP (part): systemd is not running here (PID 1 is {pid1}): the install could not start the "
                  "unit; its ExecStart is run as systemd would run it instead")
            exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
            service = subprocess.Popen([*exec_start, *ours], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = ""
            while not line.startswith("running until"):
                line = observe.readline(service, 30)
        observe.check(observe.one_connection_redirected(sb),
                      "the service accelerates a workload in a private namespace and cgroup")

        if service is not None:
            service.send_signal(signal.SIGTERM)  # what systemd's stop sends
            service.wait(timeout=60)
            observe.check(service.returncode == 0 and not os.path.exists(sb.pin), "stopped, it detaches")
        r = run("apt-get", "remove", "-y", "sockredir", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        observe.check(r.returncode == 0 and not installed(), "apt-get remove removes it")
        if systemd_running():
            observe.check(observe.wait_for("gone", lambda: not os.path.exists(sb.pin), 30) and
                          run("systemctl", "is-active", "sockredir").stdout.strip() != "active",
                          "the removal stopped the unit, which detached")
        left = [f for f in EXPECTED if os.path.exists(f[1:])]
        left += [p for p in ("/etc/systemd/system/multi-user.target.wants/sockredir.service",
                             "/var/lib/systemd/deb-systemd-helper-enabled/sockredir.service.dsh-also",
                             "/var/lib/systemd/deb-systemd-helper-masked/sockredir.service",
                             "/usr/share/doc/sockredir") if os.path.lexists(p)]
        observe.check(not left and not os.path.exists(sb.pin), f"nothing left behind ({left})")
    except AssertionError as e:
        print(f"not ok - {e}")
        return 1
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.wait()
        if installed():
            run("apt-get", "purge", "-y", "sockredir", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if os.path.exists(DROPIN):
            os.unlink(DROPIN)
            if not os.listdir(DROPIN_DIR):
                os.rmdir(DROPIN_DIR)
        if sb is not None:
            sb.bin = os.path.join(root, "build/sockredir-min")
            sb.close()
        subprocess.run(["rm", "-rf", "--", out])
    print("package: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
