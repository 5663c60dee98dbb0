#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/ and runs them: fuzz_plan over the ELF reader
# and the planner, fuzz_btf over the BTF layer (parse_btf, parse_btf_ext, encode, fix-ups, sanitize, map definitions).
#
#   tools/fuzz.sh [SECONDS]   replay each target's regressions, then fuzz SECONDS in all (default 60), split between
#                             the targets (plan gets the odd second), each starting from its committed corpus; new
#                             inputs go to build-fuzz/ (the committed corpora are only read). Exit 1 on any finding
#                             (crash, sanitizer report, leak, timeout, out-of-memory); the input is left under
#                             build-fuzz/artifacts/ (fuzz_plan) or build-fuzz/btf-artifacts/ (fuzz_btf).
#   tools/fuzz.sh --seed      (re)make the seeds (bpf/*.c, tests/data/*.bpf.c, tests/elf_builder, tests/btf_builder)
#                             and merge them in (--merge)
#   tools/fuzz.sh --merge     minimize each committed corpus + what runs found into the committed corpus (-merge=1)
#
# FUZZ_JOBS=N fuzzes in N processes (-fork=N). Without clang's fuzzer runtime (libclang-rt-14-dev) it skips
# (exit 77), except under CI=true, where that is a failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out=build-fuzz
cxx="${CXX_FUZZ:-clang++}"
cxxflags=(-std=c++20 -g -O1 -Wall -Wextra -Werror -I. -DSOCKREDIR_VERSION='"fuzz"')
sanitize=("-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=all -fno-omit-frame-pointer)

# One row per target: its sources (nothing that makes a syscall), what else it is rebuilt for, its committed corpus,
# regressions and dictionary, and where a run writes new inputs and failing ones.
targets=(plan btf)
declare -A sources=(
    [plan]="loader/base/error.cpp loader/base/file.cpp elf/reader.cpp elf/btf.cpp elf/object.cpp loader/ebpf/spec.cpp loader/ebpf/types.cpp loader/app/contract.cpp loader/app/ports.cpp tests/fuzz/fuzz_plan.cpp"
    [btf]="loader/base/error.cpp elf/reader.cpp elf/btf.cpp tests/fuzz/fuzz_btf.cpp"
)
declare -A depends=(
    [plan]="elf loader/base loader/ebpf/spec.hpp loader/ebpf/types.hpp loader/app/contract.hpp bpf/sockredir_shared.h tools/fuzz.sh"
    [btf]="elf loader/base tests/fuzz/btf_harness.hpp tools/fuzz.sh"
)
declare -A corpus=([plan]=tests/fuzz/corpus [btf]=tests/fuzz/btf/corpus)
declare -A regressions=([plan]=tests/fuzz/regressions [btf]=tests/fuzz/btf/regressions)
declare -A dict=([plan]=tests/fuzz/plan.dict [btf]=tests/fuzz/btf.dict)
declare -A found=([plan]="$out/corpus" [btf]="$out/btf-corpus")
declare -A artifacts=([plan]="$out/artifacts" [btf]="$out/btf-artifacts")

skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: $1" >&2
        exit 1
    fi
    echo "SKIP: $1"
    exit 77
}

bin_of() {
    echo "$out/fuzz_$1"
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
    local t bin newer src deps
    for t in "${targets[@]}"; do
        bin="$(bin_of "$t")"
        read -ra src <<<"${sources[$t]}"
        read -ra deps <<<"${depends[$t]}"
        newer="$(find "${src[@]}" "${deps[@]}" -newer "$bin" -print -quit 2>/dev/null || true)"
        if [[ ! -x "$bin" || -n "$newer" ]]; then
            echo "fuzz.sh: building $bin"
            "$cxx" "${cxxflags[@]}" "${sanitize[@]}" "${src[@]}" -o "$bin.tmp"
            mv "$bin.tmp" "$bin"
        fi
    done
}

# Sanitizer reports end the process with a failure; leaks are findings too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# libFuzzer's own exit codes (77 on a crash by default) must not read as a meson skip.
fuzz_flags() {
    echo -error_exitcode=1 -timeout_exitcode=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536 "-dict=${dict[$1]}"
}

# merge TARGET [DIR...]: minimizes the committed corpus, the run's new inputs and DIR... into the committed corpus.
merge() {
    local t="$1" flags
    shift
    read -ra flags <<<"$(fuzz_flags "$t")"
    rm -rf "$out/merged"
    mkdir -p "$out/merged" "${found[$t]}" "${corpus[$t]}"
    "$(bin_of "$t")" "${flags[@]}" -merge=1 "$out/merged" "${corpus[$t]}" "${found[$t]}" "$@"
    find "${corpus[$t]}" -maxdepth 1 -type f -delete
    cp "$out/merged"/* "${corpus[$t]}"/
    rm -rf "$out/merged" "${found[$t]}"
    echo "fuzz.sh: ${corpus[$t]}: $(find "${corpus[$t]}" -type f | wc -l) files, $(du -sh "${corpus[$t]}" | cut -f1)"
}

seed() {
    local multiarch seeds="$out/seeds" btf_seeds="$out/btf-seeds"
    rm -rf "$seeds" "$btf_seeds"
    mkdir -p "$seeds" "$btf_seeds"
    multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
    local bpf_flags=(-target bpf -O2 -g -Wall -Wextra -Werror -Ibpf)
    [[ -n "$multiarch" ]] && bpf_flags+=("-I/usr/include/$multiarch")
    clang "${bpf_flags[@]}" -c bpf/sockredir.bpf.c -o "$seeds/sockredir.bpf.o"
    clang "${bpf_flags[@]}" -c tests/data/verifier_reject.bpf.c -o "$seeds/verifier_reject.bpf.o"
    clang "${bpf_flags[@]}" -c tests/data/btf_maps.bpf.c -o "$seeds/btf_maps.bpf.o"
    "$cxx" "${cxxflags[@]}" tests/fuzz/seeds.cpp tests/elf_builder.cpp -o "$out/seeds_gen"
    "$out/seeds_gen" "$seeds"
    merge plan "$seeds"
    "$cxx" "${cxxflags[@]}" tests/fuzz/btf_seeds.cpp tests/btf_builder.cpp elf/reader.cpp elf/btf.cpp \
        loader/base/error.cpp -o "$out/btf_seeds_gen"
    "$out/btf_seeds_gen" "$btf_seeds" "$seeds"/*.bpf.o
    merge btf "$btf_seeds"
}

seconds=60
case "${1:-}" in
--merge)
    build
    for t in "${targets[@]}"; do
        merge "$t"
    done
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

shopt -s nullglob
for t in "${targets[@]}"; do
    read -ra flags <<<"$(fuzz_flags "$t")"
    known=("${regressions[$t]}"/*)
    if ((${#known[@]} > 0)); then
        echo "fuzz.sh: fuzz_$t: replaying ${#known[@]} regression input(s)"
        "$(bin_of "$t")" "${flags[@]}" "${known[@]}" >"$out/regressions-$t.log" 2>&1 || {
            cat "$out/regressions-$t.log" >&2
            echo "FAIL: a regression input of ${regressions[$t]} fails again" >&2
            exit 1
        }
    fi
done

jobs=()
if [[ -n "${FUZZ_JOBS:-}" && "${FUZZ_JOBS}" != 1 ]]; then
    jobs=("-fork=$FUZZ_JOBS")
fi
declare -A budget=([btf]=$((seconds / 2)))
budget[plan]=$((seconds - budget[btf]))
for t in "${targets[@]}"; do
    # -max_total_time=0 would mean no limit at all.
    if ((budget[$t] == 0)); then
        echo "fuzz.sh: fuzz_$t: no second left of ${seconds}s; regressions replayed only"
        continue
    fi
    read -ra flags <<<"$(fuzz_flags "$t")"
    mkdir -p "${found[$t]}" "${artifacts[$t]}"
    echo "fuzz.sh: fuzz_$t: fuzzing for ${budget[$t]}s from ${corpus[$t]} (new inputs: ${found[$t]})"
    rc=0
    "$(bin_of "$t")" "${flags[@]}" "${jobs[@]}" -max_total_time="${budget[$t]}" -print_final_stats=1 \
        -artifact_prefix="${artifacts[$t]}/" "${found[$t]}" "${corpus[$t]}" || rc=$?
    if ((rc != 0)); then
        echo "FAIL: fuzz_$t found a failing input (exit $rc); see ${artifacts[$t]}/ and reproduce with:" \
            "$(bin_of "$t") FILE" >&2
        exit 1
    fi
done
echo "ok: no finding in ${seconds}s"
