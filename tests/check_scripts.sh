#!/usr/bin/env bash
# Meson test: every shell script is shellcheck-clean, and our Python (bench, compat-doc, real-servers) compiles.
set -euo pipefail

root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root"

# tools/bench and its package, tools/compat-doc.py, the programs of tests/real_servers.sh and tests/observe.py, byte-compiled by the
# python3 they run under (a syntax error otherwise shows only in a root run); the bytecode goes to a temporary
# directory, not into the tree.
python=(tools/bench tools/benchlib/*.py tools/compat-doc.py tests/real_servers/*.py tests/observe.py tests/package.py tests/container.py)
pycache="$(mktemp -d)"
trap 'rm -rf -- "$pycache"' EXIT
PYTHONPYCACHEPREFIX="$pycache" /usr/bin/python3 -m py_compile "${python[@]}"
echo "ok: ${#python[@]} Python files (the bench, compat-doc, tests/real_servers, tests/observe.py) compile"

if ! command -v shellcheck >/dev/null 2>&1; then
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: shellcheck not installed (run tools/setup.sh)"
        exit 1
    fi
    echo "SKIP: shellcheck not installed (run tools/setup.sh)"
    exit 77
fi

shopt -s nullglob
scripts=(tools/*.sh tools/lib/*.sh tests/*.sh)
[[ -f .ci/run ]] && scripts+=(.ci/run)
if ((${#scripts[@]} == 0)); then
    echo "FAIL: no scripts found under $root"
    exit 1
fi

echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p') on: ${scripts[*]}"
shellcheck --external-sources -- "${scripts[@]}"
echo "ok: ${#scripts[@]} scripts clean"
