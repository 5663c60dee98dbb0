// The main of every doctest executable: doctest's, plus visible skips (tests/skip.hpp). A skipped case is counted
// in the summary's "skipped" column, not as passed, each skip is listed with its reason, and an executable whose
// every case skipped exits 77, meson's SKIP.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "tests/skip.hpp"

namespace {

// The runner's own bookkeeping: what the running case skipped for, and every case that ended skipped.
struct Skips {
    std::string reason;                                     // of the running case; empty: it did not skip
    std::vector<std::pair<std::string, std::string>> cases; // (test case, reason)
    unsigned executed = 0;                                  // cases run, skipped or not
};

Skips& skips()
{
    static Skips s;
    return s;
}

// Sees every case start and end, whichever reporter prints them. A case that skipped after a failed check stays
// failed.
struct SkipListener : doctest::IReporter {
    explicit SkipListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData& tc) override
    {
        name_ = tc.m_name;
        skips().reason.clear();
    }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats& stats) override
    {
        ++skips().executed;
        if (!skips().reason.empty() && stats.testCaseSuccess)
            skips().cases.emplace_back(name_, skips().reason);
        skips().reason.clear();
    }
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}

private:
    std::string name_;
};

REGISTER_LISTENER("sockredir-skips", 1, SkipListener);

// doctest's console reporter, with the skipped cases moved from "passed" to "skipped" in its summary line (the line
// tools/test.sh and tools/unit-asan.sh count), as doctest itself counts a case marked doctest::skip(), and with one
// "SKIP: case: reason" line per skip above it. It builds on doctest's implementation (ConsoleReporter and the
// reporter registry are not public API); a doctest without them fails this build, not the counting.
struct SkipAwareConsoleReporter : doctest::ConsoleReporter {
    using doctest::ConsoleReporter::ConsoleReporter;

    void test_run_end(const doctest::TestRunStats& stats) override
    {
        for (const auto& [name, reason] : skips().cases)
            s << "SKIP: " << name << ": " << reason << "\n";
        doctest::TestRunStats adjusted = stats;
        adjusted.numTestCasesPassingFilters -= static_cast<unsigned>(skips().cases.size());
        doctest::ConsoleReporter::test_run_end(adjusted);
    }
};

} // namespace

namespace sockredir::test {

bool in_ci()
{
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

void mark_skipped(const std::string& reason)
{
    skips().reason = reason.empty() ? "(no reason given)" : reason;
}

} // namespace sockredir::test

int main(int argc, char** argv)
{
    // -r=console (the default) gets the skip-aware reporter; -r=xml and the others stay doctest's.
    doctest::getReporters()[{0, "console"}] = [](const doctest::ContextOptions& o) -> doctest::IReporter* {
        return new SkipAwareConsoleReporter(o);
    };
    doctest::Context context(argc, argv);
    const int rc = context.run();
    if (context.shouldExit())
        return rc;
    const auto& s = skips();
    if (rc == 0 && !s.cases.empty()) {
        if (sockredir::test::in_ci())
            return EXIT_FAILURE; // SKIP_TEST_CASE fails under CI already; a skip recorded any other way fails here
        if (s.cases.size() == s.executed)
            return 77; // meson: SKIP
    }
    return rc;
}
