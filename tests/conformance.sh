#!/usr/bin/env bash
# Meson test: the conformance suite (tests/conform) on this kernel, each scenario plain and redirected, judged by the
# ledger tests/conform/known-differences.txt.
#
# usage: tests/conformance.sh SOCKREDIR-MIN SOCKREDIR-CONFORM [JSON-DIR]
#
# In a cgroup of its own with two children (plain, redirect), a private bpffs mount and a network namespace with lo
# up: sockredir-min is attached to the redirect cgroup only, the suite runs in the namespace and moves each scenario's
# child into one cgroup and then the other. Prints the table, writes JSON-DIR/conformance-$(uname -r).json (default:
# the directory of SOCKREDIR-CONFORM, the meson build dir) and checks that tools/compat-doc.py renders it.
set -euo pipefail

bin="${1:-}"
conform="${2:-}"
json_dir="${3:-}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/lib/sandbox.sh
source "$root/tools/lib/sandbox.sh"

[[ -n "$bin" && -n "$conform" ]] || fail "usage: conformance.sh SOCKREDIR-MIN SOCKREDIR-CONFORM [JSON-DIR]"
[[ -x "$bin" ]] || fail "$bin is not an executable file"
[[ -x "$conform" ]] || fail "$conform is not an executable file"
[[ "$bin" == /* ]] || bin="$PWD/$bin" # the script works in its temporary directory
[[ "$conform" == /* ]] || conform="$PWD/$conform"
[[ -n "$json_dir" ]] || json_dir="$(dirname "$conform")"
[[ "$json_dir" == /* ]] || json_dir="$PWD/$json_dir"
((EUID == 0)) || cannot_run "not root (needs cgroups, a network namespace, bpffs and BPF)"
for tool in ip nsenter mount umount mountpoint python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || cannot_run "$tool not installed (run tools/setup.sh)"
done
cgroup_root="$(cgroup2_mount "$bin")" || cannot_run "no cgroup2 mount (see $bin check)"

name="sockredir-conform-$$"
work=""
plain=""
redirect=""
suite_pid=""

cleanup() {
    local rc=$? dir
    trap - EXIT INT TERM HUP
    set +e
    cd /
    # The suite first: timeout passes the signal on to sockredir-conform, and the scenario child it may leave
    # behind is in the cgroup that cgroup.kill empties below.
    if [[ -n "$suite_pid" ]]; then
        kill -TERM "$suite_pid" 2>/dev/null
        wait "$suite_pid" 2>/dev/null
    fi
    # Detach before the cgroups go, so that no attachment outlives a failed run (sandbox_destroy's own detach then
    # says "nothing to do"); then the two children cgroups, which sandbox_destroy does not know of.
    if [[ -n "$bpffs" ]] && mountpoint -q "$bpffs"; then
        "$bin" detach --pin-dir "$pin_dir" >/dev/null || echo "conformance.sh: detach failed" >&2
    fi
    if [[ -n "$cgroup" && -d "$cgroup" ]]; then
        echo 1 >"$cgroup/cgroup.kill" 2>/dev/null
        for dir in "$plain" "$redirect"; do
            [[ -n "$dir" && -d "$dir" ]] || continue
            for _ in $(seq 1 50); do
                rmdir "$dir" 2>/dev/null && break
                sleep 0.1
            done
            [[ -d "$dir" ]] && echo "conformance.sh: could not remove cgroup $dir" >&2
        done
    fi
    sandbox_destroy conformance.sh "$bin"
    [[ -n "$work" ]] && rm -rf -- "$work"
    exit "$rc"
}
sandbox_traps cleanup

work="$(mktemp -d /tmp/sockredir-conform.XXXXXX)"
cd "$work"
sandbox_create "$cgroup_root"
mkdir "$cgroup/plain"
plain="$cgroup/plain"
mkdir "$cgroup/redirect"
redirect="$cgroup/redirect"

"$bin" attach --cgroup "$redirect" --pin-dir "$pin_dir" >/dev/null
kernel="$(uname -r)"
json="$json_dir/conformance-$kernel.json"
rc=0
# The harness stays in this script's cgroup; it moves each scenario's child into plain or redirect itself. In the
# background, so that a signal to this script runs the cleanup at once rather than after the suite.
timeout -k 5 280 "${in_netns[@]}" "$conform" --plain-cgroup "$plain" --redirect-cgroup "$redirect" \
    --sockredir "$bin" --pin-dir "$pin_dir" --ledger "$root/tests/conform/known-differences.txt" \
    --json "$json" &
suite_pid=$!
wait "$suite_pid" || rc=$?
suite_pid=""
"$bin" detach --pin-dir "$pin_dir" >/dev/null
[[ -f "$json" ]] || fail "the suite wrote no $json (exit $rc)"
echo "conformance: wrote $json"

# The document generator runs on what was just measured.
python3 "$root/tools/compat-doc.py" --ledger "$root/tests/conform/known-differences.txt" \
    --out "$work/compatibility.md" "$json" || fail "tools/compat-doc.py failed on $json"
grep -q '^| ' "$work/compatibility.md" || fail "tools/compat-doc.py wrote no table"
((rc == 0)) || fail "the conformance suite failed (exit $rc)"
echo "ok: conformance"
