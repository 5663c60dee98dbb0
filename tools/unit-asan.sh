#!/usr/bin/env bash
# Builds the unit tests and the libObject oracle with ASan + UBSan in build-asan/ and runs them (meson test unit-asan).
#
# Only sockredir-unit and sockredir-elf-oracle are built: the static binary cannot link the sanitizer runtimes and
# the e2e tests need root. Any sanitizer report fails the run (-fno-sanitize-recover, halt_on_error). The last line
# sums both executables' doctest summaries, so that tools/test.sh counts their test cases.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dir=build-asan

# MESON_* variables of an enclosing `meson test` must not leak into this nested build.
while IFS= read -r var; do
    unset "$var"
done < <(env | sed -n 's/^\(MESON_[A-Za-z_]*\)=.*/\1/p')

if [[ ! -f "$dir/build.ninja" ]]; then
    rm -rf "$dir"
    setup_log="$(mktemp)"
    # b_lundef=false: the sanitizer runtimes resolve some symbols at run time. -O1 -g for readable stack traces. No LTO:
    # it is for the size of the static binary, and linking the sanitized tests with it takes many minutes.
    meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false -Doptimization=1 -Ddebug=true \
        -Dcpp_args=-fno-sanitize-recover=all >"$setup_log" 2>&1 || {
        cat "$setup_log" >&2
        rm -f "$setup_log"
        echo "FAIL: meson setup $dir" >&2
        exit 1
    }
    rm -f "$setup_log"
fi

targets=(sockredir-unit)
# The target list is read whole first: `ninja ... | grep -q` under pipefail fails whenever grep's early exit
# kills ninja with SIGPIPE, and the oracle would silently drop out of the run.
all_targets="$(ninja -C "$dir" -t targets all 2>/dev/null || true)"
if grep -q '^sockredir-elf-oracle:' <<<"$all_targets"; then
    targets+=(sockredir-elf-oracle)
fi
ninja -C "$dir" "${targets[@]}" sockredir.bpf.o verifier_reject.bpf.o btf_maps.bpf.o

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export SOCKREDIR_BPF_OBJECT="$root/$dir/sockredir.bpf.o"
export SOCKREDIR_REJECT_OBJECT="$root/$dir/verifier_reject.bpf.o"
export SOCKREDIR_BTF_OBJECT="$root/$dir/btf_maps.bpf.o"
export SOCKREDIR_FUZZ_DIR="$root/tests/fuzz"

summary='^\[doctest\] test cases: *([0-9]+) *\| *([0-9]+) passed *\| *([0-9]+) failed *\| *([0-9]+) skipped'
total=0 passed=0 failed=0 skipped=0 rc=0
for t in "${targets[@]}"; do
    echo "unit-asan.sh: $dir/$t"
    log="$dir/$t.log"
    "$dir/$t" --no-colors "$@" >"$log" 2>&1 || rc=1
    cat "$log"
    line="$(grep -E "$summary" "$log" | tail -n 1 || true)"
    if [[ "$line" =~ $summary ]]; then
        ((total += BASH_REMATCH[1], passed += BASH_REMATCH[2], failed += BASH_REMATCH[3],
            skipped += BASH_REMATCH[4])) || true
    fi
    # A sanitizer abort before the summary, or a failing exit with nothing counted as failed.
    if ! [[ "$line" =~ $summary ]] || { ((rc != 0)) && ((failed == 0)); }; then
        echo "FAIL: $t under ASan/UBSan exited without a clean doctest summary" >&2
        ((failed += 1, total += 1))
        rc=1
    fi
done
echo "[doctest] test cases: $total | $passed passed | $failed failed | $skipped skipped"
exit "$rc"
