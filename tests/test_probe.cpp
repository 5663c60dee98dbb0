// Unit tests of loader/probe's pure part: the verdict over probed features, the report's lines, /proc/filesystems.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "loader/app/probe.hpp"

using namespace sockredir;
using namespace sockredir::app;

namespace {

Feature feature(const std::string& name, FeatureState state, const std::string& detail = {},
                const std::string& hint = {})
{
    return {name, state, detail, hint};
}

ProbeReport all_ok()
{
    ProbeReport r;
    r.kernel = "Linux 6.1.0-test";
    r.features = {
        feature("bpf(2) system call", FeatureState::Ok),
        feature("privileges", FeatureState::Ok, "root"),
        feature("program type sock_ops", FeatureState::Ok),
        feature("program type sk_msg", FeatureState::Ok),
        feature("helper bpf_sk_storage_get in sk_msg", FeatureState::Ok),
        feature("bpffs (mounted or mountable)", FeatureState::Ok, "mounted at /sys/fs/bpf"),
    };
    return r;
}

std::vector<std::string> lines(const std::string& text)
{
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        const auto nl = text.find('\n', start);
        REQUIRE(nl != std::string::npos); // every line ends with a newline
        out.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

} // namespace

TEST_CASE("a kernel with every feature can run sockredir")
{
    const auto r = all_ok();
    CHECK(can_run(r));
    CHECK(verdict(r) == "sockredir can run here");
}

TEST_CASE("an empty report is no proof: it cannot run")
{
    CHECK_FALSE(can_run(ProbeReport{}));
    CHECK(verdict(ProbeReport{}).find("cannot run") != std::string::npos);
}

TEST_CASE("a missing feature makes the verdict no, naming the feature and what provides it")
{
    auto r = all_ok();
    r.features[4] = feature("helper bpf_sk_storage_get in sk_msg", FeatureState::Missing,
                            "BPF_PROG_LOAD: Invalid argument (unknown func bpf_sk_storage_get#107)",
                            "Linux 5.15+ with CONFIG_NET_SOCK_MSG");
    CHECK_FALSE(can_run(r));
    CHECK(verdict(r) == "sockredir cannot run here: missing helper bpf_sk_storage_get in sk_msg "
                        "(Linux 5.15+ with CONFIG_NET_SOCK_MSG)");
}

TEST_CASE("several missing features are listed in order, each hint once")
{
    auto r = all_ok();
    r.features[2] = feature("program type sock_ops", FeatureState::Missing, "EINVAL", "Linux 5.15+");
    r.features[3] = feature("program type sk_msg", FeatureState::Missing, "EINVAL", "Linux 5.15+");
    r.features[5] = feature("bpffs (mounted or mountable)", FeatureState::Missing, "not in /proc/filesystems",
                            "CONFIG_BPF_SYSCALL=y");
    CHECK(verdict(r) == "sockredir cannot run here: missing program type sock_ops, program type sk_msg, "
                        "bpffs (mounted or mountable) (Linux 5.15+; CONFIG_BPF_SYSCALL=y)");
}

TEST_CASE("without privileges the verdict names only the privileges, not the features it could not probe")
{
    auto r = all_ok();
    r.features[1] = feature("privileges", FeatureState::Missing, "lacking CAP_SYS_ADMIN",
                            "needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN");
    r.features[2] = feature("program type sock_ops", FeatureState::NotProbed, "needs privileges");
    r.features[3] = feature("program type sk_msg", FeatureState::NotProbed, "needs privileges");
    CHECK_FALSE(can_run(r));
    CHECK(verdict(r) ==
          "sockredir cannot run here: missing privileges (needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)");
}

TEST_CASE("a feature that could not be probed alone still means no")
{
    auto r = all_ok();
    r.features[2].state = FeatureState::NotProbed;
    CHECK_FALSE(can_run(r));
    CHECK(verdict(r).find("cannot run") != std::string::npos);
}

TEST_CASE("the report has the kernel, one line per feature and the verdict last")
{
    auto r = all_ok();
    r.features[3] = feature("program type sk_msg", FeatureState::Missing, "BPF_PROG_LOAD: Invalid argument", "X");
    r.features[4].state = FeatureState::NotProbed;
    r.features[4].detail = "needs program type sk_msg";
    const auto l = lines(format_report(r));
    REQUIRE(l.size() == r.features.size() + 2);
    CHECK(l.front() == "kernel: Linux 6.1.0-test");
    for (size_t i = 0; i < r.features.size(); ++i) {
        CAPTURE(l[i + 1]);
        CHECK(l[i + 1].rfind(r.features[i].name + " ", 0) == 0);
    }
    CHECK(l[1].find(" ok") != std::string::npos);
    CHECK(l[2].find("ok: root") != std::string::npos);
    CHECK(l[4].find("MISSING: BPF_PROG_LOAD: Invalid argument") != std::string::npos);
    CHECK(l[5].find("not probed: needs program type sk_msg") != std::string::npos);
    CHECK(l.back() == "verdict: " + verdict(r));
}

TEST_CASE("the states start in one column")
{
    const auto l = lines(format_report(all_ok()));
    const auto column = l[1].find(" ok") + 1;
    for (size_t i = 1; i + 1 < l.size(); ++i)
        CHECK(l[i].find("ok", column) == column);
}

TEST_CASE("/proc/filesystems is read by the last field of each line")
{
    const std::string text = "nodev\tsysfs\nnodev\tcgroup\nnodev\tcgroup2\n\text4\nnodev\tbpf\nnodev\tbpf_foo";
    CHECK(has_filesystem(text, "cgroup2"));
    CHECK(has_filesystem(text, "cgroup"));
    CHECK(has_filesystem(text, "bpf"));
    CHECK(has_filesystem(text, "ext4"));
    CHECK(has_filesystem(text, "bpf_foo")); // a last line without '\n'
    CHECK_FALSE(has_filesystem(text, "nodev"));
    CHECK_FALSE(has_filesystem(text, "cgroup3"));
    CHECK_FALSE(has_filesystem(text, "bp"));
    CHECK_FALSE(has_filesystem("", "bpf"));
}

TEST_CASE("the verifier's reason is its last line that is not a statistic")
{
    CHECK(verifier_reason("0: (85) call bpf_msg_redirect_hash#71\n"
                          "program of this type cannot use helper bpf_msg_redirect_hash#71\n"
                          "processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n") ==
          "program of this type cannot use helper bpf_msg_redirect_hash#71");
    CHECK(verifier_reason("0: (85) call unknown#9999\nunknown func unknown#9999\n") == "unknown func unknown#9999");
    CHECK(verifier_reason("invalid argument\nverification time 5 usec\nstack depth 0\n\n") == "invalid argument");
    CHECK(verifier_reason("no newline at the end") == "no newline at the end");
    CHECK(verifier_reason("").empty());
    CHECK(verifier_reason("processed 1 insns\n").empty());
}
