#!/usr/bin/env bash
# Meson test: the systemd unit verifies, the man page and the completion are --help's, the DaemonSet is well-formed
# and runs `run`, the README's usage is --help's.
set -euo pipefail

if (($# != 3)); then
    echo "usage: check_contrib.sh SOURCE-ROOT PATH-TO-sockredir-min PATH-TO-BUILT-sockredir.service" >&2
    exit 2
fi
root="$1"
bin="$2"
unit="$3"
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
# The unit as the build made it from contrib/systemd/sockredir.service.in, for meson's sbindir.
installed="$(sed -n 's|^ExecStart=\(/.*\)/sockredir-min run$|\1|p' "$unit")/sockredir-min"
if [[ "$installed" == /sockredir-min ]] || grep -q '@' "$unit"; then
    fail "$unit: no 'ExecStart=SBINDIR/sockredir-min run' line, or a token left unreplaced"
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

# --- the man page and the bash completion: every command and option of --help, and a page man renders cleanly ---
help_words="$("$bin" --help | sed -n '/^usage:/,/^$/p' | grep -o -- '--[a-z-]*\|sockredir-min [a-z]*' |
    sed 's/^sockredir-min //' | sort -u)"
page="$root/docs/sockredir-min.8"
completion="$root/contrib/bash-completion/sockredir-min"
for word in $help_words; do
    # roff writes a hyphen of an option as \-; whole words: --port is not --ports.
    grep -qwF -- "${word//-/\\-}" "$page" || fail "$page: no '$word' (--help has it)"
done
# The completion offers each command exactly the options of its usage line.
if ! out="$(python3 - "$completion" <<PY
import re, sys
usage = """$("$bin" --help | sed -n '/^usage:/,/^$/p')"""
want = {m.group(1): sorted(re.findall(r"\[(--[a-z-]+)", m.group(2)))
        for m in re.finditer(r"sockredir-min ([a-z]+)(.*)", usage)}
text = open(sys.argv[1], encoding="utf-8").read()
got = {c: sorted(o.split()) for c, o in re.findall(r'\[([a-z]+)\]="([^"]*)"', text)}
commands = re.search(r'local commands="([^"]*)"', text).group(1).split()
bad = [f"{c}: {got.get(c)} != {want[c]}" for c in want if got.get(c) != want[c]]
bad += [f"commands {sorted(commands)} != {sorted([*want, '--help', '--version'])}"] if sorted(commands) != sorted([*want, "--help", "--version"]) else []
print("; ".join(bad))
sys.exit(1 if bad else 0)
PY
)"; then
    fail "$completion differs from --help: $out"
fi
if command -v man >/dev/null 2>&1; then
    if warnings="$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)" &&
        [[ -z "$warnings" ]]; then
        echo "ok: sockredir-min(8) and the bash completion have every command and option of --help; man renders it"
    else
        fail "man warns about $page:"
        printf '%s\n' "$warnings" | sed 's/^/    /'
    fi
else
    missing_tool man-db
fi
if command -v bash >/dev/null 2>&1 && [[ -f /usr/share/bash-completion/bash_completion ]]; then
    # Completing "sockredir-min li" and "sockredir-min list --p" with bash-completion's own machinery.
    got="$(bash -c 'source /usr/share/bash-completion/bash_completion; source "$1"
        COMP_LINE="sockredir-min li"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(sockredir-min li); COMP_CWORD=1
        _sockredir_min; echo "${COMPREPLY[*]}"
        COMP_LINE="sockredir-min list --p"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(sockredir-min list --p); COMP_CWORD=2
        _sockredir_min; echo "${COMPREPLY[*]}"' _ "$completion")"
    if [[ "$got" == $'list\n--pin-dir --port' ]]; then
        echo "ok: the completion completes commands and a command's options"
    else
        fail "the completion of 'li' and 'list --p' gave: $got"
    fi
else
    missing_tool bash-completion
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
