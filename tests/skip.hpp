// A test case that cannot run here says so: SKIP with a reason, never a pass; under CI=true, a failure.
#pragma once

#include <string>

#include <doctest/doctest.h>

namespace sockredir::test {

// CI=true in the environment: there, a test that cannot run fails.
bool in_ci();

// Records the running test case as skipped for `reason` (tests/main.cpp counts and lists it). Use SKIP_TEST_CASE.
void mark_skipped(const std::string& reason);

} // namespace sockredir::test

// Ends the running test case (use it in the TEST_CASE's own body) as skipped for `reason`, a std::string; under
// CI=true, fails it instead. The case is then counted in doctest's "skipped" column, not as passed, and an
// executable whose every case skipped exits 77, which meson reports as SKIP.
#define SKIP_TEST_CASE(reason)                                                                                         \
    do {                                                                                                               \
        const std::string skip_reason_ = (reason);                                                                     \
        if (::sockredir::test::in_ci())                                                                                \
            FAIL("CI=true and cannot run: " << skip_reason_);                                                          \
        ::sockredir::test::mark_skipped(skip_reason_);                                                                 \
        return;                                                                                                        \
    } while (0)
