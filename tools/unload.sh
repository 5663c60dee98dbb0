#!/usr/bin/env bash
# The classic tutorial name: sockredir-min detach, every argument passed through.
set -euo pipefail

bin="${SOCKREDIR_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/sockredir-min}"
if [[ ! -x "$bin" ]]; then
    echo "unload.sh: $bin not found; run tools/setup.sh first" >&2
    exit 1
fi
exec "$bin" detach "$@"
