#!/usr/bin/env bash
# The layers of the C++ code, from the bottom: loader/base, elf, loader/ebpf, loader/app. A file includes only its
# own layer and the ones below it; bpf/ (the application's contract with the BPF programs) only from loader/app; and
# the layers under the application name nothing of sockredir's. check_layers.sh ROOT; ROOT defaults to the tree
# this script is in. The script first proves on a small tree of its own that it catches each kind of violation.
set -euo pipefail

layers=(loader/base elf loader/ebpf loader/app)

# The rank of a path's layer (0 = bottom), "bpf" for the BPF side, or "" when it is in no layer.
rank_of() {
    local path="$1" i
    for i in "${!layers[@]}"; do
        [[ "$path" == "${layers[$i]}/"* ]] && {
            echo "$i"
            return
        }
    done
    [[ "$path" == bpf/* ]] && echo bpf
    return 0
}

# Prints one line per violation under $1; returns 1 when there is any.
check_tree() {
    local root="$1" bad=0 file rel own inc target
    while IFS= read -r file; do
        rel="${file#"$root"/}"
        own="$(rank_of "$rel")"
        [[ -n "$own" && "$own" != bpf ]] || continue
        while IFS= read -r inc; do
            if [[ "$inc" == ../* || "$inc" == ./* ]]; then
                echo "$rel: #include \"$inc\" is relative; write it from the project root"
                bad=1
                continue
            fi
            target="$(rank_of "$inc")"
            if [[ "$target" == bpf ]]; then
                if ((own != ${#layers[@]} - 1)); then
                    echo "$rel: #include \"$inc\": only loader/app may include bpf/ (the application's contract)"
                    bad=1
                fi
            elif [[ -z "$target" ]]; then
                if [[ ! -e "$root/$(dirname "$rel")/$inc" ]]; then
                    echo "$rel: #include \"$inc\" is in no layer"
                    bad=1
                fi
            elif ((target > own)); then
                echo "$rel: #include \"$inc\": ${layers[$own]} may not include the higher layer ${layers[$target]}"
                bad=1
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
        # Below the application, no sockredir name: no SOCKREDIR_* constant, no sockredir_* type, no "sockredir..."
        # string (the namespace sockredir:: is the project's, not the application's).
        if ((own < ${#layers[@]} - 1)) && grep -nE 'SOCKREDIR_|sockredir_|"sockredir' "$file" >/dev/null; then
            grep -nE 'SOCKREDIR_|sockredir_|"sockredir' "$file" | sed "s|^|$rel:|; s|$| (a sockredir name below loader/app)|"
            bad=1
        fi
    done < <(find "$root/loader" "$root/elf" -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' \) 2>/dev/null | sort)
    return "$bad"
}

self_test() {
    local t
    t="$(mktemp -d)"
    trap 'rm -rf "$t"' RETURN
    mkdir -p "$t/loader/base" "$t/elf" "$t/loader/ebpf" "$t/loader/app" "$t/bpf"
    echo '#include "loader/base/a.hpp"' >"$t/elf/ok.cpp"
    check_tree "$t" >/dev/null || {
        echo "check_layers self-test: a downward include was reported"
        return 1
    }
    local case
    for case in 'elf/x.cpp:#include "loader/app/cli.hpp"' 'loader/ebpf/x.cpp:#include "bpf/shared.h"' \
        'loader/base/x.cpp:#include "../elf/reader.hpp"' 'loader/ebpf/x.cpp:#define M SOCKREDIR_MAP'; do
        echo "${case#*:}" >"$t/${case%%:*}"
        if check_tree "$t" >/dev/null; then
            echo "check_layers self-test: not caught: ${case}"
            return 1
        fi
        rm "$t/${case%%:*}"
    done
}

self_test
root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
if ! check_tree "$root"; then
    echo "FAIL: the layers are crossed (see above)"
    exit 1
fi
echo "layers: ${layers[*]}: every include goes down"
