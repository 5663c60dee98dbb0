# shellcheck shell=bash
# The variables below are set for the caller (SC2034), and `name` and `work` come from it (SC2154).
# shellcheck disable=SC2034,SC2154
# Sourced, not run: the isolation that tools/demo.sh and tests/real_servers.sh share, a cgroup of their own
# under the cgroup2 mount, a private bpffs mount and a private network namespace with lo up.
#
# The caller sets `name` (unique, e.g. with $$) and `work` (its temporary directory) and calls
# sandbox_create; that sets, each only once the thing exists, so teardown never touches what the
# caller did not make:
#   cgroup      the cgroup directory          bpffs / pin_dir   the private bpffs mount / pin dir in it
#   netns_made  1 once the namespace exists   netns_path        /run/netns/$name
#   in_sandbox  ("${in_sandbox[@]}" CMD...: run CMD in the cgroup and the namespace)
#   in_netns    ("${in_netns[@]}" CMD...: run CMD in the namespace only, to look at it)
# sandbox_destroy undoes all of it, detaching first whatever is attached with pins in pin_dir; the caller
# stops its own processes before. sandbox_traps CLEANUP installs the caller's cleanup for exit and signals.

# Outside CI a machine that cannot run a test skips it (meson: exit 77); under CI=true that is a failure.
cannot_run() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: $* (CI=true: a skip is a failure)"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# cgroup2_mount BIN: the cgroup2 mount point as BIN (sockredir-min) finds it, so that a script and the binary agree
# on the mount: loader/ebpf/mounts.cpp takes the first cgroup2 mounted at its root ("/") and decodes octal escapes.
# Read from the detail of one line of `BIN check`, "cgroup2 (mounted or mountable)   ok: mounted at PATH"; fails
# when cgroup2 is not mounted (check may still say "ok: not mounted; attach mounts it ...").
cgroup2_mount() {
    local out line
    # check exits 1 when any other feature is missing; its cgroup2 line is there all the same.
    out="$("$1" check 2>/dev/null)" || true
    while IFS= read -r line; do
        [[ "$line" == "cgroup2 (mounted or mountable) "* ]] || continue
        line="${line#cgroup2 (mounted or mountable) }"
        line="${line#"${line%%[! ]*}"}" # the padding up to the state
        [[ "$line" == "ok: mounted at /"* ]] || return 1
        printf '%s\n' "${line#ok: mounted at }"
        return 0
    done <<<"$out"
    return 1
}

cgroup=""
bpffs=""
pin_dir=""
netns_made=0
in_sandbox=()
in_netns=()

# sandbox_create CGROUP-ROOT: the cgroup, the bpffs mount under $work and the namespace named $name.
sandbox_create() {
    netns_path="/run/netns/$name"
    mkdir "$1/$name"
    cgroup="$1/$name"
    mkdir "$work/bpffs"
    mount -t bpf bpf "$work/bpffs"
    bpffs="$work/bpffs"
    pin_dir="$bpffs/sockredir"
    ip netns add "$name"
    netns_made=1
    ip -n "$name" link set lo up
    # The shell joins the cgroup first, then execs nsenter, which execs CMD: one pid from fork to exit,
    # so $! of a background "${in_sandbox[@]}" CMD & is CMD's own pid. (A shell function would fork a
    # subshell in between, and killing $! would orphan CMD.)
    # shellcheck disable=SC2016 # $$, $0, $1 and $@ belong to the inner shell.
    in_sandbox=(bash -c 'printf "%s\n" "$$" >"$1" || exit 1; shift; exec nsenter --net="$0" -- "$@"'
        "$netns_path" "$cgroup/cgroup.procs")
    in_netns=(nsenter --net="$netns_path" --)
}

# sandbox_traps CLEANUP: CLEANUP runs on every exit; a signal exits with 128 + its number.
sandbox_traps() {
    # shellcheck disable=SC2064 # the function's name, expanded now on purpose
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# sandbox_destroy PROG BIN: everything sandbox_create made; PROG names the caller in complaints. An
# attachment pinned in pin_dir (or an attach cut short) is taken down with BIN (sockredir-min) first:
# detach says "nothing to do" when there is none.
sandbox_destroy() {
    local pid
    if [[ -n "$bpffs" ]] && mountpoint -q "$bpffs"; then
        "$2" detach --pin-dir "$pin_dir" >/dev/null || echo "$1: detach failed" >&2
    fi
    if [[ -n "$cgroup" && -d "$cgroup" ]]; then
        # Whatever is still in the cgroup was started by the caller (a child of a child, a server's
        # worker); nothing else can have entered it. cgroup.kill where the kernel has it (5.14+).
        if ! echo 1 >"$cgroup/cgroup.kill" 2>/dev/null; then
            while read -r pid; do
                kill -KILL "$pid" 2>/dev/null
            done <"$cgroup/cgroup.procs"
        fi
        # A killed process leaves the cgroup a moment after it dies.
        for _ in $(seq 1 50); do
            rmdir "$cgroup" 2>/dev/null && break
            sleep 0.1
        done
        [[ -d "$cgroup" ]] && echo "$1: could not remove cgroup $cgroup" >&2
    fi
    if ((netns_made)); then
        ip netns delete "$name" || echo "$1: could not delete netns $name" >&2
    fi
    if [[ -n "$bpffs" ]] && mountpoint -q "$bpffs"; then
        umount "$bpffs" || echo "$1: could not unmount $bpffs" >&2
    fi
}

# TCP segments sent in the namespace (/proc/net/snmp Tcp OutSegs). The reader never ends early:
# under meson, whose children get SIGPIPE at its default, a writer left behind would die of it.
tcp_out_segs() {
    "${in_netns[@]}" cat /proc/net/snmp | awk '
        $1 == "Tcp:" && !hdr { for (i = 2; i <= NF; i++) col[$i] = i; hdr = 1; next }
        $1 == "Tcp:" && hdr && segs == "" { segs = $col["OutSegs"] }
        END { print segs }'
}
