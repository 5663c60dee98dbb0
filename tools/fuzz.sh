#!/usr/bin/env bash
# Builds the libFuzzer target over the ELF reader and the planner (clang, ASan + UBSan) into build-fuzz/ and runs it.
#
#   tools/fuzz.sh [SECONDS]   replay tests/fuzz/regressions, then fuzz SECONDS (default 60) starting from the
#                             committed corpus tests/fuzz/corpus; new inputs go to build-fuzz/corpus (the committed
#                             corpus is only read). Exit 1 on any finding (crash, sanitizer report, leak, timeout,
#                             out-of-memory); the input is left under build-fuzz/artifacts/.
#   tools/fuzz.sh --seed      (re)make the seed objects (bpf/*.c and tests/elf_builder) and merge them in (--merge)
#   tools/fuzz.sh --merge     minimize tests/fuzz/corpus + build-fuzz/corpus into tests/fuzz/corpus (-merge=1)
#
# FUZZ_JOBS=N fuzzes in N processes (-fork=N). Without clang's fuzzer runtime (libclang-rt-14-dev) it skips
# (exit 77), except under CI=true, where that is a failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out=build-fuzz
corpus=tests/fuzz/corpus
regressions=tests/fuzz/regressions
bin="$out/fuzz_plan"
cxx="${CXX_FUZZ:-clang++}"
# Everything sockredir_spec() needs, and nothing that makes a syscall (no loader/sys.cpp).
sources=(loader/base/error.cpp elf/reader.cpp elf/object.cpp loader/ebpf/spec.cpp loader/ebpf/types.cpp
    loader/app/contract.cpp loader/app/ports.cpp tests/fuzz/fuzz_plan.cpp)
cxxflags=(-std=c++20 -g -O1 -Wall -Wextra -Werror -I. -DSOCKREDIR_VERSION='"fuzz"')
sanitize=("-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=all -fno-omit-frame-pointer)

skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: $1" >&2
        exit 1
    fi
    echo "SKIP: $1"
    exit 77
}

build() {
    mkdir -p "$out"
    command -v "$cxx" >/dev/null 2>&1 || skip "$cxx not found (tools/setup.sh installs clang)"
    # A probe first, so that a missing fuzzer runtime is a skip with a reason, not a build error.
    if [[ ! -x "$out/probe" ]]; then
        printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
            'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$out/probe.cpp"
        "$cxx" "${sanitize[@]}" "$out/probe.cpp" -o "$out/probe" 2>"$out/probe.log" ||
            skip "$cxx cannot link -fsanitize=fuzzer (libclang-rt-14-dev missing?): $(head -n 1 "$out/probe.log")"
    fi
    local newer
    newer="$(find "${sources[@]}" elf loader/base loader/ebpf/spec.hpp loader/ebpf/types.hpp loader/app/contract.hpp bpf/sockredir_shared.h tools/fuzz.sh -newer "$bin" \
        -print -quit 2>/dev/null || true)"
    if [[ ! -x "$bin" || -n "$newer" ]]; then
        echo "fuzz.sh: building $bin"
        "$cxx" "${cxxflags[@]}" "${sanitize[@]}" "${sources[@]}" -o "$bin.tmp"
        mv "$bin.tmp" "$bin"
    fi
}

# Sanitizer reports end the process with a failure; leaks are findings too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# libFuzzer's own exit codes (77 on a crash by default) must not read as a meson skip.
fuzz_flags=(-error_exitcode=1 -timeout_exitcode=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536
    -dict=tests/fuzz/plan.dict)

merge() {
    rm -rf "$out/merged"
    mkdir -p "$out/merged" "$out/corpus" "$corpus"
    "$bin" "${fuzz_flags[@]}" -merge=1 "$out/merged" "$corpus" "$out/corpus" "$@"
    find "$corpus" -maxdepth 1 -type f -delete
    cp "$out/merged"/* "$corpus"/
    rm -rf "$out/merged" "$out/corpus"
    echo "fuzz.sh: $corpus: $(find "$corpus" -type f | wc -l) files, $(du -sh "$corpus" | cut -f1)"
}

seed() {
    local multiarch seeds="$out/seeds"
    rm -rf "$seeds"
    mkdir -p "$seeds"
    multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
    local bpf_flags=(-target bpf -O2 -g -Wall -Wextra -Werror -Ibpf)
    [[ -n "$multiarch" ]] && bpf_flags+=("-I/usr/include/$multiarch")
    clang "${bpf_flags[@]}" -c bpf/sockredir.bpf.c -o "$seeds/sockredir.bpf.o"
    clang "${bpf_flags[@]}" -c tests/data/verifier_reject.bpf.c -o "$seeds/verifier_reject.bpf.o"
    "$cxx" "${cxxflags[@]}" tests/fuzz/seeds.cpp tests/elf_builder.cpp -o "$out/seeds_gen"
    "$out/seeds_gen" "$seeds"
    merge "$seeds"
}

seconds=60
case "${1:-}" in
--merge)
    build
    merge
    exit 0
    ;;
--seed)
    build
    seed
    exit 0
    ;;
"") ;;
*[!0-9]* | -*)
    echo "usage: tools/fuzz.sh [SECONDS] | --seed | --merge" >&2
    exit 2
    ;;
*) seconds="$1" ;;
esac

build
mkdir -p "$out/corpus" "$out/artifacts"

shopt -s nullglob
known=("$regressions"/*)
if ((${#known[@]} > 0)); then
    echo "fuzz.sh: replaying ${#known[@]} regression input(s)"
    "$bin" "${fuzz_flags[@]}" "${known[@]}" >"$out/regressions.log" 2>&1 || {
        cat "$out/regressions.log" >&2
        echo "FAIL: a regression input of $regressions fails again" >&2
        exit 1
    }
fi

jobs=()
if [[ -n "${FUZZ_JOBS:-}" && "${FUZZ_JOBS}" != 1 ]]; then
    jobs=("-fork=$FUZZ_JOBS")
fi
echo "fuzz.sh: fuzzing for ${seconds}s from $corpus (new inputs: $out/corpus)"
rc=0
"$bin" "${fuzz_flags[@]}" "${jobs[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$out/corpus" "$corpus" || rc=$?
if ((rc != 0)); then
    echo "FAIL: fuzz_plan found a failing input (exit $rc); see $out/artifacts/ and reproduce with: $bin FILE" >&2
    exit 1
fi
echo "ok: no finding in ${seconds}s"
