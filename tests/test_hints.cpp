// Unit tests of loader/app/hints: describe_error decides by (call, errno), from one table.
#include <doctest/doctest.h>

#include <cerrno>
#include <string>

#include "loader/app/hints.hpp"
#include "loader/base/error.hpp"

using sockredir::app::describe_error;
using sockredir::app::error_hints;
using sockredir::base::Error;

namespace {

// describe_error of e, checked to be one line that starts with the error itself, unchanged.
std::string line(const Error& e)
{
    const std::string d = describe_error(e);
    CHECK(d.find('\n') == std::string::npos);
    CHECK(d.rfind(e.what(), 0) == 0);
    return d;
}

std::string hint_of(const Error& e)
{
    const std::string d = line(e);
    return d.substr(std::string(e.what()).size());
}

} // namespace

TEST_CASE("each row of the hint table is appended to a failure of its calls with its errno")
{
    REQUIRE_FALSE(error_hints().empty());
    for (const auto& row : error_hints()) {
        const std::string text = " (" + std::string(row.text) + ")";
        CAPTURE(row.code);
        CAPTURE(text);
        if (row.calls.empty()) {
            // Any call, and a failure that names none.
            CHECK(hint_of(Error("BPF_MAP_CREATE", "map 'sock_hash'", row.code)) == text);
            CHECK(hint_of(Error("mount", "bpffs at /sys/fs/bpf", row.code)) == text);
            CHECK(hint_of(Error("opening /x", row.code)) == text);
        }
        for (const auto call : row.calls) {
            CAPTURE(call);
            CHECK(hint_of(Error(std::string(call), "x", row.code)) == text);
            // The same errno without the call gets no row of this one (the text is never looked at).
            CHECK(hint_of(Error(std::string(call) + " x", row.code)).find(text) == std::string::npos);
        }
    }
}

TEST_CASE("each kernel refusal is one line that says what the operator can do")
{
    CHECK(line(Error("BPF_MAP_CREATE", "map 'sock_hash'", EPERM)).find("needs root") != std::string::npos);
    CHECK(line(Error("mount", "bpffs at /sys/fs/bpf", EPERM)).find("needs root") != std::string::npos);
    CHECK(line(Error("BPF_MAP_CREATE", "map 'sock_hash'", ENOMEM)).find("lower --max-sockets") != std::string::npos);
    CHECK(line(Error("BPF_LINK_CREATE", "", E2BIG)).find("Linux 5.15 or newer") != std::string::npos);
    CHECK(line(Error("BPF_LINK_CREATE", "", EINVAL)).find("lacks a feature") != std::string::npos);
    CHECK(line(Error("BPF_PROG_LOAD", "program 'x'", EINVAL)).find("lacks a feature") != std::string::npos);
    CHECK(line(Error("BPF_MAP_CREATE", "map 'x'", ENOSYS)).find("CONFIG_BPF_SYSCALL") != std::string::npos);
}

TEST_CASE("a failure no row matches is printed as it is")
{
    // EINVAL outside the bpf(2) commands that create or attach: a bad argument, not a missing feature.
    const Error not_bpf("cgroup /x: not a cgroup2 directory", EINVAL);
    CHECK(line(not_bpf) == std::string(not_bpf.what()));
    const Error obj_get("BPF_OBJ_GET", "/sys/fs/bpf/x", EINVAL);
    CHECK(line(obj_get) == std::string(obj_get.what()));
    // A text that looks like a bpf(2) failure is no bpf(2) failure: the call decides.
    const Error text_only("BPF_LINK_CREATE: Invalid argument", EINVAL);
    CHECK(line(text_only) == std::string(text_only.what()));
    // The verifier's EACCES gets no guess appended; neither does an error with no errno.
    const Error verifier("BPF_PROG_LOAD", "the verifier rejected program 'sockredir_msg'", EACCES);
    CHECK(line(verifier) == std::string(verifier.what()));
    const Error plain("ELF header: not an ELF file (bad magic)");
    CHECK(line(plain) == std::string(plain.what()));
}
