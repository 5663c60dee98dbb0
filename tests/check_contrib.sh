#!/usr/bin/env bash
# Meson test: the systemd unit verifies, the DaemonSet is well-formed and runs `run`, the README's usage is --help's.
set -euo pipefail

if (($# != 2)); then
    echo "usage: check_contrib.sh SOURCE-ROOT PATH-TO-sockredir-min" >&2
    exit 2
fi
root="$1"
bin="$2"
failures=0
skips=()

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# A tool this check needs is missing: a skip outside CI, a failure under CI=true.
missing_tool() {
    if [[ "${CI:-}" == "true" ]]; then
        fail "$1 not installed (run tools/setup.sh)"
    else
        echo "SKIP: $1 not installed (run tools/setup.sh)"
        skips+=("$1")
    fi
}

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

# --- systemd ---------------------------------------------------------------------------------------------------------
unit="$root/contrib/systemd/sockredir.service"
installed=/usr/local/sbin/sockredir-min
if ! grep -qx "ExecStart=$installed run" "$unit"; then
    fail "$unit: no 'ExecStart=$installed run' line"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that the binary exists: point the unit at the one just built.
    sed "s|$installed|$bin|g" "$unit" >"$tmp/sockredir.service"
    if out="$(systemd-analyze verify "$tmp/sockredir.service" 2>&1)" && [[ -z "$out" ]]; then
        echo "ok: systemd-analyze verify sockredir.service"
    else
        fail "systemd-analyze verify sockredir.service:"
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
else
    missing_tool systemd-analyze
fi

# --- Kubernetes ------------------------------------------------------------------------------------------------------
manifest="$root/contrib/kubernetes/sockredir-daemonset.yaml"
if python3 -c 'import yaml' >/dev/null 2>&1; then
    if python3 - "$manifest" <<'PY'; then
import sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")) if d is not None]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

need(len(docs) == 1, "one document")
ds = docs[0] if docs else {}
need(ds.get("apiVersion") == "apps/v1" and ds.get("kind") == "DaemonSet", "apiVersion apps/v1, kind DaemonSet")
spec = ds.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
selector = spec.get("selector", {}).get("matchLabels", {})
need(selector and all(labels.get(k) == v for k, v in selector.items()), "the selector matches the pod's labels")
need(not pod.get("hostPID") and not pod.get("hostNetwork"), "neither hostPID nor hostNetwork")
containers = pod.get("containers", [])
need(len(containers) == 1, "one container")
c = containers[0] if containers else {}
cmd = c.get("command", []) + c.get("args", [])
need(len(cmd) >= 2 and cmd[0].endswith("sockredir-min") and cmd[1] == "run", "the container runs 'sockredir-min run'")
need(c.get("securityContext", {}).get("privileged") is True, "a privileged container")
mounts = {m.get("name"): m for m in c.get("volumeMounts", [])}
volumes = {v.get("name"): v.get("hostPath", {}).get("path") for v in pod.get("volumes", [])}
need(any(m.get("mountPath") == "/sys/fs/bpf" and volumes.get(n) == "/sys/fs/bpf" for n, m in mounts.items()),
     "the node's /sys/fs/bpf mounted at /sys/fs/bpf")
need(any(m.get("mountPropagation") == "Bidirectional" and m.get("mountPath") == "/sys/fs/bpf" for m in mounts.values()),
     "bpffs mounted with Bidirectional propagation")
cg = [m.get("mountPath") for n, m in mounts.items() if volumes.get(n) == "/sys/fs/cgroup"]
need(len(cg) == 1, "the node's /sys/fs/cgroup mounted once")
need(cg and "--cgroup" in cmd and cmd[cmd.index("--cgroup") + 1] == cg[0], "--cgroup names the node's cgroup2 mount")
need(pod.get("terminationGracePeriodSeconds", 30) >= 10, "a grace period for detach")
# The metrics: run serves them on a port the pod declares, and the scrape annotations name that port and path.
notes = spec.get("template", {}).get("metadata", {}).get("annotations", {})
ports = {p.get("containerPort") for p in c.get("ports", [])}
addr = cmd[cmd.index("--metrics") + 1] if "--metrics" in cmd else ""
need(addr.rpartition(":")[2].isdigit() and int(addr.rpartition(":")[2]) in ports, "run --metrics on a declared port")
need(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == addr.rpartition(":")[2] and
     notes.get("prometheus.io/path") == "/metrics", "the prometheus.io scrape annotations name the metrics port")
for p in problems:
    print("FAIL: DaemonSet: " + p)
sys.exit(1 if problems else 0)
PY
        echo "ok: the DaemonSet parses and runs sockredir-min run with the node's bpffs and cgroup2, metrics annotated"
    else
        fail "$manifest"
    fi
else
    missing_tool python3-yaml
fi

# --- the README's Commands block is --help's usage -------------------------------------------------------------------
"$bin" --help | sed -n '/^usage: /,/^$/p' | sed -e 's/^usage: //' -e 's/^       //' -e '/^$/d' >"$tmp/help"
awk '/^## Commands/ { in_section = 1 }
     in_section && /^```/ { n++; next }
     in_section && n == 1 { print }
     n >= 2 { exit }' \
    "$root/README.md" >"$tmp/readme"
if diff -u "$tmp/help" "$tmp/readme" >"$tmp/diff"; then
    echo "ok: README's Commands block is the usage of --help"
else
    fail "README's Commands block differs from --help (- --help, + README):"
    sed 's/^/    /' "$tmp/diff"
fi

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
if ((${#skips[@]} > 0)); then
    exit 77
fi
