#!/usr/bin/env bash
# Builds (via setup.sh) and runs every meson test; the last line is "N passed, N failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# CI=true reaches the tests through the environment: there, a skip is a failure.
if [[ -n "${CI:-}" ]]; then
    export CI
fi

log=build/meson-logs/testlog.json

# Counts of tests meson knows about, for when nothing ran at all.
count_defined_tests() {
    meson introspect --tests build 2>/dev/null |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 1
}

if ! bash tools/setup.sh; then
    echo "test.sh: setup/build failed; no test could run" >&2
    echo "0 passed, $(count_defined_tests) failed"
    exit 1
fi

rm -f "$log"
meson_rc=0
meson test -C build --print-errorlogs "$@" || meson_rc=$?

if [[ ! -s "$log" ]]; then
    # Nothing ran: every test asked for (all of them without arguments) counts as failed.
    echo "test.sh: meson test exited $meson_rc and wrote no $log" >&2
    if (($# > 0)); then
        echo "0 passed, $# failed"
    else
        echo "0 passed, $(count_defined_tests) failed"
    fi
    exit 1
fi

# One JSON object per line, with "name", "result" (OK, FAIL, SKIP, TIMEOUT, ERROR,
# EXPECTEDFAIL, UNEXPECTEDPASS) and "stdout". A doctest executable counts as its test
# cases (its "[doctest] test cases:" line, where tests/main.cpp puts the cases that
# skipped at run time in the skipped column, not among the passed); any other test
# counts as one. A doctest executable whose every case skipped exits 77 (SKIP). Under CI
# a skip counts as a failure.
counts="$(python3 - "$log" <<'PY'
import json, os, re, sys

ci = os.environ.get("CI", "") == "true"
summary = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped")
passed = failed = skipped = 0
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line:
        continue
    entry = json.loads(line)
    result = entry.get("result", "")
    found = summary.findall(entry.get("stdout") or "")
    if found:
        _, p, f, s = (int(x) for x in found[-1])
        passed += p
        failed += f
        if ci:
            failed += s
        else:
            skipped += s
        if result == "SKIP":
            # Exit 77 is for "every case skipped": without a skipped case counted, it hides something.
            if s == 0:
                failed += 1
        elif result not in ("OK", "EXPECTEDFAIL") and f == 0:
            # A crash or time-out after the summary, or a failing exit with none counted.
            failed += 1
    elif result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif result == "SKIP" and not ci:
        skipped += 1
    else:
        failed += 1
print(passed, failed, skipped)
PY
)"
read -r passed failed skipped <<<"$counts"

# meson prints only the last 100 lines of a failed test's log, and a doctest failure can sit far above them: print
# every failed test's failing assertions (doctest's ERROR and FATAL ERROR lines, with what follows each) before the
# count, so CI's output always names them.
python3 - "$log" <<'PY' || true
import json, re, sys

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line:
        continue
    entry = json.loads(line)
    if entry.get("result", "") in ("OK", "EXPECTEDFAIL", "SKIP"):
        continue
    out = (entry.get("stdout") or "").splitlines()
    shown = 0
    print(f"test.sh: {entry.get('name', '?')} {entry.get('result', '')}: its failing assertions", file=sys.stderr)
    for i, text in enumerate(out):
        if re.search(r": (FATAL )?ERROR: |TEST CASE FAILED|test case THREW", text) and shown < 20:
            shown += 1
            # The test case's title is the line after the separator above the failure.
            title = next((out[j + 2] for j in range(i, -1, -1) if out[j].startswith("=====") and j + 2 < len(out)), "")
            print(f"  {title.strip()}", file=sys.stderr)
            for extra in out[i : i + 6]:
                print(f"    {extra[:400]}", file=sys.stderr)
    if shown == 0:
        print("  (no doctest assertion in its output; see its log above)", file=sys.stderr)
PY

if ((skipped > 0)); then
    echo "test.sh: $skipped test(s) skipped (counted as neither; under CI=true a skip fails)"
fi
if ((failed == 0 && meson_rc != 0)); then
    # meson failed without a failed test in the log (e.g. a rebuild error): do not hide it.
    echo "test.sh: meson test exited $meson_rc" >&2
    failed=1
fi
echo "$passed passed, $failed failed"
((failed == 0))
