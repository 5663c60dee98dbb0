// Unit tests of loader/app/selftest's pure part, no root: the table of defects, the config word they are stored in,
// check's section, attach's warning lines and status's line.
#include <doctest/doctest.h>

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/app/selftest.hpp"

using namespace sockredir::app;

namespace {

constexpr uint32_t kAll = SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN |
                          SOCKREDIR_DEFECT_FIONREAD | SOCKREDIR_DEFECT_TCP_INFO_BYTES | SOCKREDIR_DEFECT_MSG_TRUNC |
                          SOCKREDIR_DEFECT_SHUTDOWN_RD | SOCKREDIR_DEFECT_OOB_INLINE | SOCKREDIR_DEFECT_SPLICE;
// Every probe but blocking-read-eagain, in table order: those that attach.
constexpr const char* kAttached = "close-unread-fin, fionread-redirected, tcp-info-bytes, msg-trunc-ignored, "
                                  "shutdown-rd-readable, oob-inline, splice-misses-redirected";

uint32_t probed(uint32_t bits)
{
    return bits << SOCKREDIR_DEFECT_PROBED_SHIFT;
}

// A report with the given state for each row, in table order.
SelfTestReport report(std::vector<DefectState> states)
{
    SelfTestReport r = selftests_not_run("why");
    for (size_t i = 0; i < states.size(); ++i) {
        r.findings[i].state = states[i];
        r.findings[i].detail = "saw " + std::to_string(i);
    }
    return r;
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
        out.push_back(text.substr(start, nl - start));
    CHECK(start == text.size()); // every line ends with '\n'
    return out;
}

} // namespace

TEST_CASE("each defect has a name of its own, a bit of its own below the probed half, and its patterns")
{
    const auto specs = defect_specs();
    REQUIRE(specs.size() == kDefectCount);
    std::set<std::string> names;
    uint32_t bits = 0;
    for (const auto& spec : specs) {
        CAPTURE(spec.name);
        CHECK(names.insert(spec.name).second);
        CHECK((spec.bit != 0 && (spec.bit & (spec.bit - 1)) == 0)); // one bit
        CHECK((bits & spec.bit) == 0);
        CHECK(spec.bit < (1U << SOCKREDIR_DEFECT_PROBED_SHIFT));
        CHECK(std::string(spec.behaviour).size() > 20);
        CHECK(std::string(spec.patterns).size() > 20);
        bits |= spec.bit;
    }
    CHECK(bits == kAll);
    CHECK(std::string(specs[0].name) == "blocking-read-eagain");
    CHECK(std::string(specs[1].name) == "close-unread-fin");
    CHECK(std::string(specs[2].name) == "fionread-redirected");
    CHECK(std::string(specs[3].name) == "tcp-info-bytes");
    CHECK(std::string(specs[4].name) == "msg-trunc-ignored");
    CHECK(std::string(specs[5].name) == "shutdown-rd-readable");
    CHECK(std::string(specs[6].name) == "oob-inline");
    CHECK(std::string(specs[7].name) == "splice-misses-redirected");
    // The bits stored by earlier attachments keep their meaning: new probes take new bits.
    CHECK(specs[0].bit == 1U << 0);
    CHECK(specs[3].bit == 1U << 3);
    CHECK(specs[4].bit == 1U << 4);
    CHECK(specs[7].bit == 1U << 7);
    // Only the first costs no attach of its own: the one attach runs. It alone bites without redirection: insertion
    // into the map is enough.
    CHECK_FALSE(specs[0].needs_attach);
    CHECK_FALSE(specs[0].needs_redirect);
    for (size_t i = 1; i < specs.size(); ++i) {
        CAPTURE(specs[i].name);
        CHECK(specs[i].needs_attach);
        CHECK(specs[i].needs_redirect);
    }
}

TEST_CASE("the config word has what was found in the low half and what was probed in the high half")
{
    using S = DefectState;
    CHECK(defect_bits(selftests_not_run("no privileges")) == 0);
    CHECK(defect_bits(report({S::Present, S::NotProbed, S::NotProbed, S::NotProbed})) ==
          (SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | probed(SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN)));
    const uint32_t first_four = SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN |
                                SOCKREDIR_DEFECT_FIONREAD | SOCKREDIR_DEFECT_TCP_INFO_BYTES;
    CHECK(defect_bits(report({S::Absent, S::Present, S::Absent, S::Present})) ==
          (SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN | SOCKREDIR_DEFECT_TCP_INFO_BYTES | probed(first_four)));
    CHECK(defect_bits(report({S::Absent, S::Absent, S::Absent, S::Absent, S::Absent, S::Absent, S::Absent,
                              S::Absent})) == probed(kAll));
    CHECK(defect_bits(report({S::Absent, S::Absent, S::Absent, S::Absent, S::Present, S::NotProbed, S::Absent,
                              S::Present})) == (SOCKREDIR_DEFECT_MSG_TRUNC | SOCKREDIR_DEFECT_SPLICE |
                                                probed(kAll & ~static_cast<uint32_t>(SOCKREDIR_DEFECT_SHUTDOWN_RD))));
}

TEST_CASE("the config word keeps ports where they were: defects takes the reserved word")
{
    CHECK(offsetof(sockredir_config, defects) == 4);
    CHECK(offsetof(sockredir_config, max_inflight) == 8);
    CHECK(sizeof(sockredir_config) == 16 + 8 * SOCKREDIR_PORT_WORDS);
}

TEST_CASE("status names the defects found, says none found, and what was not probed")
{
    CHECK(format_defects(0) == "not recorded (no self-test ran at attach)");
    CHECK(format_defects(probed(kAll)) == "none found");
    CHECK(format_defects(SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN | probed(kAll)) ==
          "blocking-read-eagain, close-unread-fin");
    CHECK(format_defects(SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | probed(SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN)) ==
          std::string("blocking-read-eagain (not probed: ") + kAttached + ")");
    CHECK(format_defects(probed(SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN)) ==
          std::string("none found (not probed: ") + kAttached + ")");
    // What an attachment of an older sockredir-min recorded, with the first four probes only: the new ones are not
    // probed there.
    const uint32_t old_four = SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN |
                              SOCKREDIR_DEFECT_FIONREAD | SOCKREDIR_DEFECT_TCP_INFO_BYTES;
    CHECK(format_defects(SOCKREDIR_DEFECT_FIONREAD | probed(old_four)) ==
          "fionread-redirected (not probed: msg-trunc-ignored, shutdown-rd-readable, oob-inline, "
          "splice-misses-redirected)");
}

TEST_CASE("the defect lists for status --json are JSON strings in table order")
{
    CHECK(defect_list(0, true).empty());
    CHECK(defect_list(SOCKREDIR_DEFECT_TCP_INFO_BYTES | SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN, true) ==
          "\"blocking-read-eagain\",\"tcp-info-bytes\"");
    CHECK(defect_list(SOCKREDIR_DEFECT_FIONREAD, false) == "fionread-redirected");
    CHECK(defect_list(SOCKREDIR_DEFECT_SPLICE | SOCKREDIR_DEFECT_MSG_TRUNC, true) ==
          "\"msg-trunc-ignored\",\"splice-misses-redirected\"");
    // Bits beyond the table name nothing.
    CHECK(defect_list(~0U, false) == std::string("blocking-read-eagain, ") + kAttached);
}

TEST_CASE("attach warns once per defect present, in one line each, what it does and whom it affects")
{
    const uint32_t bits = SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN | probed(kAll);
    const auto lines = lines_of(defect_warnings(bits, true));
    REQUIRE(lines.size() == 2);
    const auto specs = defect_specs();
    for (size_t i = 0; i < 2; ++i) {
        CAPTURE(lines[i]);
        CHECK(lines[i] == std::string("sockredir-min: warning: this kernel's sockmap path ") + specs[i].behaviour +
                              "; affects: " + specs[i].patterns);
    }
    CHECK(lines[0].find("returns EAGAIN to a blocking recv()") != std::string::npos);
    CHECK(lines[0].find("like hiredis") != std::string::npos);
    CHECK(lines[1].find("rely on a reset") != std::string::npos);
    // Nothing found, nothing said.
    CHECK(defect_warnings(probed(kAll), true).empty());
}

TEST_CASE("without redirection only the defect that insertion alone brings is warned about")
{
    const uint32_t bits = kAll | probed(kAll);
    const auto lines = lines_of(defect_warnings(bits, false));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("returns EAGAIN") != std::string::npos);
    CHECK(lines_of(defect_warnings(bits, true)).size() == kDefectCount);
}

TEST_CASE("a probe attach runs that could not run is warned about as unknown, the others are not")
{
    // Nothing probed (the child could not start): the one attach runs is said to be unknown.
    const auto lines = lines_of(defect_warnings(0, true));
    REQUIRE(lines.size() == 2);
    // And the probes that need an attachment of their own, which attach never runs, are named in one line.
    CHECK(lines[1] == std::string("sockredir-min: warning: redirected connections may also differ from TCP here in ") +
                          kAttached + " (not probed at attach; sockredir-min check proves each on this kernel)");
    // Without redirection none of them can bite.
    CHECK(lines_of(defect_warnings(0, false)).size() == 1);
    CHECK(lines[0].rfind("sockredir-min: warning: the self-test could not tell whether this kernel's sockmap path "
                         "returns EAGAIN",
                         0) == 0);
    CHECK(lines[0].find("; affects: a blocking reader") != std::string::npos);
}

TEST_CASE("check's section has its time, then one line per probe: present with its patterns, absent, not probed")
{
    using S = DefectState;
    SelfTestReport r = report({S::Present, S::Absent, S::NotProbed, S::Present});
    r.elapsed_ms = 42;
    const auto lines = lines_of(format_selftests(r));
    REQUIRE(lines.size() == 1 + kDefectCount);
    CHECK(lines[0] == "live self-tests (this kernel, a private namespace and cgroup; not part of the verdict): 42 ms");
    const auto specs = defect_specs();
    // The states line up after the longest name, splice-misses-redirected, and two spaces.
    CHECK(lines[1] == std::string("  blocking-read-eagain      present: saw 0; affects: ") + specs[0].patterns);
    CHECK(lines[2] == "  close-unread-fin          absent: saw 1");
    CHECK(lines[3] == "  fionread-redirected       not probed: saw 2");
    CHECK(lines[4] == std::string("  tcp-info-bytes            present: saw 3; affects: ") + specs[3].patterns);
    CHECK(lines[8] == "  splice-misses-redirected  not probed: why");
}

TEST_CASE("a report of probes not run says why on every line")
{
    const auto r = selftests_not_run("needs privileges");
    for (const auto& f : r.findings) {
        CHECK(f.state == DefectState::NotProbed);
        CHECK(f.detail == "needs privileges");
    }
    CHECK(format_selftests(r).find("not probed: needs privileges") != std::string::npos);
}
