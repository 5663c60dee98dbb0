#!/usr/bin/python3
"""The DaemonSet's image, tested: podman builds contrib/kubernetes/Containerfile, and the image is what the DaemonSet
relies on.

container.py ROOT BIN
- the image holds the static binary and nothing else (one layer, one file, the build's bytes, no ELF interpreter),
  and its entrypoint runs `sockredir-min run`;
- its root file system alone, with what a container runtime gives every container (/proc, /sys) and the DaemonSet's
  two host paths (bpffs at /sys/fs/bpf, the cgroup2 root at /host/sys/fs/cgroup), runs: `run` attaches, a workload
  in a private namespace and cgroup is redirected, SIGTERM detaches and leaves nothing. Without the host paths it
  refuses in one line that names them. This runs the image's files in a mount namespace and a chroot of its own;
- where podman can run containers here, the same with `podman run --privileged` as the DaemonSet does, stopped with
  `podman stop`. These machines deny setrlimit to container runtimes: that part then says SKIP with podman's words.
Only the test's own cgroup and pin dir are used; the image is removed at the end. Exits 0, 1 or 77.
"""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import observe  # noqa: E402  (the sandbox, the peers and the checks)

SKIP = 77


def run(*argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, **kw)


def elf_is_static(data):
    """No PT_INTERP and no PT_DYNAMIC among the program headers of a 64-bit little-endian ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types and 2 not in types


def run_as_daemonset(sb, rootfs, cgroup_root, host_paths=True):
    """The image's root file system in a mount namespace and a chroot, as a container runtime runs it."""
    inside_cg = "/host/sys/fs/cgroup/" + os.path.relpath(sb.cg, cgroup_root)
    mounts = [f"mount -t proc proc {rootfs}/proc", f"mount -t sysfs sysfs {rootfs}/sys"]
    if host_paths:
        mounts += [f"mount --bind /sys/fs/bpf {rootfs}/sys/fs/bpf",
                   f"mount --bind {cgroup_root} {rootfs}/host/sys/fs/cgroup"]
    else:
        # sysfs brings empty mount points; a container's own cgroup2 would be there, not the node's.
        mounts += [f"mount -t tmpfs none {rootfs}/sys/fs/bpf", f"mount -t tmpfs none {rootfs}/sys/fs/cgroup"]
    script = " && ".join(mounts) + f" && exec chroot {rootfs} /sockredir-min run --cgroup {inside_cg} " \
        f"--pin-dir {sb.pin}"
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, binary = argv[1], argv[2]
    if os.geteuid() != 0:
        print("SKIP: needs root (podman, bpf, cgroups, mounts)")
        return SKIP
    if run("which", "podman").returncode != 0:
        print("SKIP: podman not installed (run tools/setup.sh)")
        return SKIP
    tag = f"localhost/sockredir-test-{os.getpid()}:latest"
    work = tempfile.mkdtemp(prefix="sockredir-container-")
    sb = None
    procs = []
    container = f"sockredir-test-{os.getpid()}"
    try:
        # The build context is the tree; .containerignore lets only build/sockredir-min into it.
        r = run("podman", "build", "-q", "-f", os.path.join(root, "contrib/kubernetes/Containerfile"), "-t", tag,
                root)
        observe.check(r.returncode == 0, "podman builds contrib/kubernetes/Containerfile"
                      + ("" if r.returncode == 0 else f": {r.stderr.strip()[-1000:]}"))
        config = json.loads(run("podman", "image", "inspect", tag).stdout)[0]["Config"]
        observe.check(config.get("Entrypoint") == ["/sockredir-min"] and config.get("Cmd") == ["run"],
                      f"its entrypoint runs sockredir-min run ({config.get('Entrypoint')} {config.get('Cmd')})")

        archive = os.path.join(work, "image.tar")
        r = run("podman", "save", "--format", "docker-archive", "-o", archive, tag)
        observe.check(r.returncode == 0, "podman saves it")
        with tarfile.open(archive) as t:
            manifest = json.load(t.extractfile("manifest.json"))
            layers = manifest[0]["Layers"]
            members = []
            for layer in layers:
                with tarfile.open(fileobj=t.extractfile(layer)) as lt:
                    for m in lt.getmembers():
                        members.append((m.name, m.isfile(), m.mode, lt.extractfile(m).read() if m.isfile() else b""))
        names = [m[0] for m in members]
        observe.check(len(layers) == 1 and names == ["sockredir-min"],
                      f"one layer, one file: the binary and nothing else ({names})")
        data = members[0][3]
        built = open(binary, "rb").read()
        observe.check(hashlib.sha256(data).digest() == hashlib.sha256(built).digest() and members[0][2] & 0o111,
                      "the build's binary, byte for byte, executable")
        observe.check(elf_is_static(data), "statically linked: no ELF interpreter, no dynamic section")

        # Its root file system alone: the binary, and the mount points a runtime and the DaemonSet use.
        rootfs = os.path.join(work, "rootfs")
        for d in ("proc", "sys", "host/sys/fs/cgroup"):
            os.makedirs(os.path.join(rootfs, d))
        with open(os.path.join(rootfs, "sockredir-min"), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(rootfs, "sockredir-min"), 0o755)

        sb = observe.Sandbox(binary)
        cgroup_root = observe.cgroup2_root()
        p = run_as_daemonset(sb, rootfs, cgroup_root, host_paths=False)
        procs.append(p)
        _, err = p.communicate(timeout=60)
        err = err.decode(errors="replace")
        observe.check(p.returncode == 1 and err.count("\n") == 1 and "cgroup" in err and
                      not os.path.exists(sb.pin),
                      f"without the node's bpffs and cgroup2: exit 1, one line ({err.strip()})")

        p = run_as_daemonset(sb, rootfs, cgroup_root)
        procs.append(p)
        line = ""
        while not line.startswith("running until"):
            line = observe.readline(p, 60)
        observe.check(os.path.exists(sb.pin), "with them, as the DaemonSet mounts them: run attaches")
        observe.check(observe.one_connection_redirected(sb),
                      "a workload in a private namespace and cgroup is redirected")
        p.send_signal(signal.SIGTERM)  # the kubelet's stop
        p.wait(timeout=60)
        observe.check(p.returncode == 0 and not os.path.exists(sb.pin), "SIGTERM: it detaches and leaves nothing")

        # podman run as the DaemonSet runs it, where this host lets a runtime run.
        r = run("podman", "run", "-d", "--name", container, "--privileged", "--network", "none",
                "-v", "/sys/fs/bpf:/sys/fs/bpf:rshared", "-v", f"{cgroup_root}:/host/sys/fs/cgroup:ro", tag,
                "run", "--cgroup", "/host/sys/fs/cgroup/" + os.path.relpath(sb.cg, cgroup_root),
                "--pin-dir", sb.pin)
        started = r.returncode == 0 and observe.wait_for("attached", lambda: os.path.exists(sb.pin), 20)
        if not started:
            logs = (r.stderr + run("podman", "logs", container).stderr).strip()
            why = next((line for line in logs.splitlines() if line.startswith("Error")), logs[-300:])
            print(f"SKIP (part): podman cannot run containers on this host ({why}); README, Deployment, says "
                  "which hosts run the image")
        else:
            observe.check(observe.one_connection_redirected(sb), "podman run: a workload is redirected")
            r = run("podman", "stop", "-t", "30", container)
            observe.check(r.returncode == 0 and not os.path.exists(sb.pin), "podman stop: it detaches")
    except AssertionError as e:
        print(f"not ok - {e}")
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        run("podman", "rm", "-f", container)
        run("podman", "rmi", "-f", tag)
        if sb is not None:
            sb.close()
        subprocess.run(["rm", "-rf", "--", work])
    print("container: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
