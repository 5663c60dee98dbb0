#!/usr/bin/env bash
# Installs what the build and the tests need (only what is missing), then configures and builds build/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Debian 12 names. llvm-dev pulls llvm-14-dev (libObject and llvm-config for the
# oracle test). doctest-dev ships no pkg-config file; meson.build falls back to its
# header. libc6-dev and linux-libc-dev:
# libc.a for the static link and <linux/bpf.h>. binutils: strip. mount and
# util-linux: mount, mountpoint and nsenter for tools/demo.sh. redis-server,
# redis-tools, nginx, wrk, curl, postgresql, haproxy: tests/real_servers.sh (it starts its
# own instances in a private namespace; services the install may start are not used).
# qemu-system-x86, busybox-static, cpio: tools/vmtest.sh (it fetches the kernels itself).
# systemd (systemd-analyze) and python3-yaml: the contrib test. python3-prometheus-client and curl: tests/observe.py
# (meson tests list and metrics) parse the metrics with a real Prometheus text parser and scrape run --metrics.
# man-db and bash-completion: the contrib test renders the man page and runs the completion. dpkg-dev, lintian
# and fakeroot: tools/package.sh and its test. podman: the container test builds the DaemonSet's image.
packages=(
    clang llvm llvm-dev
    meson ninja-build g++ pkg-config python3 doctest-dev
    libc6-dev linux-libc-dev binutils
    iperf3 tcpdump iproute2 file shellcheck
    mount util-linux
    redis-server redis-tools nginx wrk curl postgresql haproxy
    qemu-system-x86 busybox-static cpio systemd python3-yaml python3-prometheus-client
    man-db bash-completion dpkg-dev lintian podman
    libclang-rt-14-dev # clang's libFuzzer and sanitizer runtimes: tools/fuzz.sh (meson test fuzz-60s)
    sockperf python3-matplotlib bpftool time # tools/bench (meson test bench-smoke); bpftool only for its comparison
)

is_installed() {
    local status
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)"
    [[ "$status" == ii* ]]
}

missing=()
for p in "${packages[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]} > 0)); then
    if ((EUID != 0)); then
        echo "setup.sh: missing packages (${missing[*]}) and not root; install them or rerun as root" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Warnings are errors in CI only (CI=true): a user's build, or a newer compiler's, does not fail on a new warning.
werror=false
if [[ "${CI:-}" == "true" ]]; then
    werror=true
fi
if [[ ! -f build/meson-private/coredata.dat ]]; then
    meson setup -Dwerror="$werror" build
elif [[ ! -f build/build.ninja ]] || ((${#missing[@]} > 0)); then
    # A configure that failed half-way, or optional dependencies (LLVM for the oracle
    # test) looked up before they were installed: configure again, keeping the options.
    meson setup --reconfigure -Dwerror="$werror" build
elif [[ "$(meson introspect --buildoptions build | python3 -c 'import json, sys
print(next(str(o["value"]).lower() for o in json.load(sys.stdin) if o["name"] == "werror"))')" != "$werror" ]]; then
    meson configure -Dwerror="$werror" build
fi

ninja -C build
