// Unit tests of loader/app/check, no root: the verdict over probed features and the report's lines; the requirement
// list read off the object; and the probe chain against a fake kernel (tests/fake_kernel) that refuses what a test
// chooses.
#include <doctest/doctest.h>

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "loader/app/check.hpp"
#include "loader/app/cli.hpp"
#include "loader/app/hints.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/features.hpp"
#include "loader/ebpf/spec.hpp"
#include "tests/elf_builder.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using namespace sockredir::app;
using sockredir::test::FakeKernel;

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

TEST_CASE("hints are said once part by part, so a shared build requirement is not repeated")
{
    auto r = all_ok();
    r.features[2] = feature("program type sock_ops", FeatureState::Missing, "", "Linux 4.13+; built with X");
    r.features[3] = feature("program type sk_msg", FeatureState::Missing, "", "Linux 4.17+; built with X");
    CHECK(verdict(r) == "sockredir cannot run here: missing program type sock_ops, program type sk_msg "
                        "(Linux 4.13+; built with X; Linux 4.17+)");
}

// --- the requirement list, read off the object ------------------------------------------------------------------

namespace {

std::vector<std::string> names(const std::vector<Requirement>& requirements)
{
    std::vector<std::string> out;
    for (const auto& r : requirements)
        out.push_back(r.name);
    return out;
}

bool has(const std::vector<std::string>& list, const std::string& item)
{
    return std::find(list.begin(), list.end(), item) != list.end();
}

// The real object with the immediate of every call of helper `from` in section `section` set to `to`.
test::Bytes with_helper_replaced(const std::string& section, int32_t from, int32_t to)
{
    auto bytes = test::real_object();
    const auto shdr = test::get_shdr(bytes, test::section_index(bytes, section));
    int replaced = 0;
    for (uint64_t off = shdr.sh_offset; off + sizeof(bpf_insn) <= shdr.sh_offset + shdr.sh_size;
         off += sizeof(bpf_insn)) {
        auto i = test::load<bpf_insn>(bytes, off);
        if (ebpf::insn::is_helper_call(i) && i.imm == from) {
            i.imm = to;
            test::store(bytes, off, i);
            ++replaced;
        }
    }
    REQUIRE(replaced > 0);
    return bytes;
}

} // namespace

TEST_CASE("the real object asks for its program types, map types, and each helper in each type that calls it")
{
    const auto reqs = kernel_requirements(ebpf::open_object(test::real_object()));
    const auto n = names(reqs);
    for (const char* expected :
         {"program type sock_ops", "program type sk_msg", "BTF loading (BPF_BTF_LOAD)", "map type sockhash",
          "map type percpu_array", "map type array", "map type sk_storage", "helper bpf_map_lookup_elem in sock_ops",
          "helper bpf_map_lookup_elem in sk_msg", "helper bpf_sock_hash_update in sock_ops",
          "helper bpf_msg_redirect_hash in sk_msg", "helper bpf_get_netns_cookie in sock_ops",
          "helper bpf_skc_to_tcp_sock in sk_msg", "helper bpf_skc_to_tcp_sock in sock_ops",
          "helper bpf_sk_storage_get in sock_ops", "helper bpf_sk_storage_get in sk_msg", "map type hash",
          "map type lru_hash", "helper bpf_map_delete_elem in sock_ops", "cgroup BPF links (BPF_LINK_CREATE)"}) {
        CAPTURE(expected);
        CHECK(has(n, expected));
    }
    // Each requirement once, and whatever it needs comes before it.
    for (size_t i = 0; i < n.size(); ++i) {
        CAPTURE(n[i]);
        CHECK(std::count(n.begin(), n.end(), n[i]) == 1);
        for (const auto& need : reqs[i].needs)
            CHECK(std::find(n.begin(), n.begin() + static_cast<std::ptrdiff_t>(i), need) != n.begin() + i);
    }
    for (const auto& r : reqs) {
        if (r.probe == Requirement::Probe::Helper)
            CHECK(r.needs == std::vector<std::string>{"program type " + ebpf::prog_type_label(r.type)});
        if (r.name == "map type sk_storage")
            CHECK(r.needs == std::vector<std::string>{"BTF loading (BPF_BTF_LOAD)"});
        if (r.probe == Requirement::Probe::CgroupLink) {
            CHECK(r.type == BPF_PROG_TYPE_SOCK_OPS);
            CHECK(r.arg == BPF_CGROUP_SOCK_OPS);
        }
    }
}

TEST_CASE("a new helper call in the object is a new requirement, with nobody editing a list")
{
    // sk_msg's one call of bpf_skc_to_tcp_sock becomes a call of bpf_get_prandom_u32.
    const auto patched = with_helper_replaced("sk_msg", BPF_FUNC_skc_to_tcp_sock, BPF_FUNC_get_prandom_u32);
    const auto n = names(kernel_requirements(ebpf::open_object(patched)));
    CHECK(has(n, "helper bpf_get_prandom_u32 in sk_msg"));
    CHECK_FALSE(has(n, "helper bpf_skc_to_tcp_sock in sk_msg"));
    CHECK(has(n, "helper bpf_skc_to_tcp_sock in sock_ops"));
    CHECK_FALSE(has(n, "helper bpf_get_prandom_u32 in sock_ops"));

    // And it is probed: a kernel that refuses it fails the check on that line.
    FakeKernel kernel;
    kernel.helper_answers[{BPF_PROG_TYPE_SK_MSG, BPF_FUNC_get_prandom_u32}] = {
        EINVAL, "0: (85) call bpf_get_prandom_u32#7\nprogram of this type cannot use helper bpf_get_prandom_u32#7\n"};
    const auto report = probe_kernel(patched, Privileges{std::nullopt, true});
    CHECK(verdict(report).find("missing helper bpf_get_prandom_u32 in sk_msg (Linux 4.1+;") != std::string::npos);
}

TEST_CASE("a helper unknown to the tables is named by its number")
{
    const auto patched = with_helper_replaced("sk_msg", BPF_FUNC_skc_to_tcp_sock, 9999);
    CHECK(has(names(kernel_requirements(ebpf::open_object(patched))), "helper helper #9999 in sk_msg"));
}

TEST_CASE("an object that calls no helper asks for none, and one without the sock_ops program still for links")
{
    test::ObjectRecipe recipe;
    recipe.programs = {{"sk_msg", "only_msg", {}}};
    const auto reqs = kernel_requirements(ebpf::open_object(recipe.build()));
    const auto n = names(reqs);
    CHECK(has(n, "program type sk_msg"));
    CHECK_FALSE(has(n, "program type sock_ops"));
    CHECK(std::none_of(reqs.begin(), reqs.end(), [](const auto& r) { return r.probe == Requirement::Probe::Helper; }));
    const auto link =
        std::find_if(reqs.begin(), reqs.end(), [](const auto& r) { return r.probe == Requirement::Probe::CgroupLink; });
    REQUIRE(link != reqs.end());
    CHECK(link->needs.empty());
}

// --- the probe chain, against a fake kernel -----------------------------------------------------------------------

namespace {

const Privileges kCapable{std::nullopt, true};

ProbeReport probe_real(const Privileges& privileges = kCapable)
{
    return probe_kernel(test::real_object(), privileges);
}

const Feature& line(const ProbeReport& r, const std::string& name)
{
    const auto f = std::find_if(r.features.begin(), r.features.end(), [&](const Feature& x) { return x.name == name; });
    REQUIRE_MESSAGE(f != r.features.end(), "no line '" << name << "' in\n" << format_report(r));
    return *f;
}

// The lines of everything but the two filesystems, which this host answers for, not the fake kernel.
std::vector<Feature> kernel_lines(const ProbeReport& r)
{
    std::vector<Feature> out;
    for (const auto& f : r.features)
        if (f.name.find("(mounted or mountable)") == std::string::npos)
            out.push_back(f);
    return out;
}

size_t open_fds()
{
    size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (::readdir(d) != nullptr)
        ++n;
    ::closedir(d);
    return n;
}

} // namespace

TEST_CASE("on a kernel with every feature each requirement of the object has an ok line, in the object's order")
{
    FakeKernel kernel;
    const auto report = probe_real();
    const auto lines = kernel_lines(report);
    const auto reqs = kernel_requirements(ebpf::open_object(test::real_object()));
    REQUIRE(lines.size() == reqs.size() + 2);
    CHECK(lines[0].name == "bpf(2) system call");
    CHECK(lines[1].name == "privileges");
    CHECK(lines[1].detail == "root");
    for (size_t i = 0; i < reqs.size(); ++i) {
        CAPTURE(lines[i + 2].name);
        CHECK(lines[i + 2].name == reqs[i].name);
        // The optional lines of the eviction programs read this host's kernel BTF, which a host may lack.
        const bool host_btf = std::ifstream("/sys/kernel/btf/vmlinux").good();
        CHECK((lines[i + 2].state == FeatureState::Ok || (!host_btf && !reqs[i].optional.empty())));
    }
    CHECK(report.features.size() == lines.size() + 2); // cgroup2 and bpffs last
}

TEST_CASE("a kernel without sk_msg reports sk_msg missing and every sk_msg helper not probed")
{
    FakeKernel kernel;
    kernel.no_prog_types = {BPF_PROG_TYPE_SK_MSG};
    const auto report = probe_real();
    const auto& msg = line(report, "program type sk_msg");
    CHECK(msg.state == FeatureState::Missing);
    CHECK(msg.detail == "BPF_PROG_LOAD: Invalid argument");
    CHECK(msg.hint.rfind("Linux 4.17+; built with CONFIG_BPF_SYSCALL", 0) == 0);
    size_t helpers = 0;
    for (const auto& f : report.features) {
        if (f.name.rfind("helper ", 0) != 0)
            continue;
        CAPTURE(f.name);
        const bool in_msg = f.name.size() > 7 && f.name.compare(f.name.size() - 7, 7, " sk_msg") == 0;
        CHECK(f.state == (in_msg ? FeatureState::NotProbed : FeatureState::Ok));
        if (in_msg)
            CHECK(f.detail == "needs program type sk_msg");
        helpers += in_msg;
    }
    CHECK(helpers >= 4);
    // Only the program type was asked of sk_msg (a load, then the retry with the log).
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_SK_MSG) == 2);
    CHECK(verdict(report).rfind("sockredir cannot run here: missing program type sk_msg (Linux 4.17+; built with", 0) ==
          0);
}

TEST_CASE("EPERM from bpf(2) gives the privileges hint and nothing else is asked")
{
    FakeKernel kernel;
    kernel.all = EPERM;
    const auto report = probe_real();
    const auto& p = line(report, "privileges");
    CHECK(p.state == FeatureState::Missing);
    CHECK(p.detail == "bpf(2) refused: Operation not permitted (a user namespace, lockdown or an LSM?)");
    const auto lines = kernel_lines(report);
    for (size_t i = 2; i < lines.size(); ++i) {
        CAPTURE(lines[i].name);
        CHECK(lines[i].state == FeatureState::NotProbed);
        CHECK(lines[i].detail == "needs privileges");
    }
    CHECK(kernel.calls.size() == 1);
    CHECK(verdict(report).rfind(
              "sockredir cannot run here: missing privileges (needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)",
              0) == 0);
}

TEST_CASE("a process lacking capabilities is told so, and no program is loaded")
{
    FakeKernel kernel;
    const auto report = probe_real(Privileges{"lacking CAP_SYS_ADMIN", false});
    const auto& p = line(report, "privileges");
    CHECK(p.state == FeatureState::Missing);
    CHECK(p.detail == "lacking CAP_SYS_ADMIN");
    CHECK(line(report, "program type sock_ops").detail == "needs privileges");
    CHECK(kernel.calls.size() == 1); // the one bpf(2) call that asks whether bpf(2) exists
}

TEST_CASE("a kernel without bpf(2) says CONFIG_BPF_SYSCALL, and every other feature needs it")
{
    FakeKernel kernel;
    kernel.all = ENOSYS;
    const auto report = probe_real();
    const auto& bpf = line(report, "bpf(2) system call");
    CHECK(bpf.state == FeatureState::Missing);
    CHECK(bpf.hint == "CONFIG_BPF_SYSCALL=y");
    CHECK(line(report, "privileges").detail == "needs bpf(2) system call");
    CHECK(line(report, "map type sockhash").detail == "needs bpf(2) system call");
}

TEST_CASE("one probe refused with EPERM gets the privileges hint, not a kernel release")
{
    FakeKernel kernel;
    kernel.link_err = EPERM;
    const auto report = probe_real();
    const auto& link = line(report, "cgroup BPF links (BPF_LINK_CREATE)");
    CHECK(link.state == FeatureState::Missing);
    CHECK(link.detail == "BPF_LINK_CREATE: Operation not permitted");
    CHECK(link.hint == "needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN");
}

TEST_CASE("a helper the verifier calls unknown is missing with the verifier's words and its release")
{
    FakeKernel kernel;
    kernel.helper_answers[{BPF_PROG_TYPE_SK_MSG, BPF_FUNC_skc_to_tcp_sock}] = {
        EINVAL, "0: (85) call bpf_skc_to_tcp_sock#137\nunknown func bpf_skc_to_tcp_sock#137\n"
                "processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n"};
    const auto report = probe_real();
    const auto& f = line(report, "helper bpf_skc_to_tcp_sock in sk_msg");
    CHECK(f.state == FeatureState::Missing);
    CHECK(f.detail == "BPF_PROG_LOAD: Invalid argument (unknown func bpf_skc_to_tcp_sock#137)");
    CHECK(f.hint.rfind("Linux 5.9+; ", 0) == 0);
    CHECK(line(report, "helper bpf_skc_to_tcp_sock in sock_ops").state == FeatureState::Ok);
}

TEST_CASE("a kernel that cannot load BTF reports socket storage not probed")
{
    FakeKernel kernel;
    kernel.btf_err = EINVAL;
    const auto report = probe_real();
    const auto& btf = line(report, "BTF loading (BPF_BTF_LOAD)");
    CHECK(btf.state == FeatureState::Missing);
    CHECK(btf.detail == "BPF_BTF_LOAD: Invalid argument");
    CHECK(btf.hint.rfind("Linux 4.18+; ", 0) == 0);
    const auto& storage = line(report, "map type sk_storage");
    CHECK(storage.state == FeatureState::NotProbed);
    CHECK(storage.detail == "needs BTF loading (BPF_BTF_LOAD)");
    CHECK(line(report, "map type sockhash").state == FeatureState::Ok);
}

TEST_CASE("a kernel without a map type says so on its line with the release that brought it")
{
    FakeKernel kernel;
    kernel.no_map_types = {BPF_MAP_TYPE_SOCKHASH};
    const auto report = probe_real();
    const auto& f = line(report, "map type sockhash");
    CHECK(f.state == FeatureState::Missing);
    CHECK(f.detail == "BPF_MAP_CREATE: Invalid argument");
    CHECK(f.hint.rfind("Linux 4.18+; ", 0) == 0);
}

TEST_CASE("cgroup links: EBADF for the probe's non-cgroup means there, EINVAL missing since Linux 5.7")
{
    {
        FakeKernel kernel;
        const auto report = probe_real();
        CHECK(line(report, "cgroup BPF links (BPF_LINK_CREATE)").state == FeatureState::Ok);
    }
    FakeKernel kernel;
    kernel.link_err = EINVAL;
    const auto report = probe_real();
    const auto& f = line(report, "cgroup BPF links (BPF_LINK_CREATE)");
    CHECK(f.state == FeatureState::Missing);
    CHECK(f.detail == "BPF_LINK_CREATE: Invalid argument");
    CHECK(f.hint.rfind("Linux 5.7+; ", 0) == 0);
}

TEST_CASE("the probes close every descriptor the kernel gives them")
{
    const auto before = open_fds();
    {
        FakeKernel kernel;
        probe_real();
        kernel.link_err = 0; // a link that is made after all
        probe_real();
    }
    CHECK(open_fds() == before);
}

TEST_CASE("an object that cannot be opened is refused before anything is asked of the kernel")
{
    FakeKernel kernel;
    const auto garbage = test::to_bytes("not an ELF file");
    CHECK_THROWS_AS(probe_kernel(garbage, kCapable), base::Error);
    CHECK(kernel.calls.empty());
}

// --- one hint table for the verdict and describe_error ------------------------------------------------------------

TEST_CASE("hint_for says what the operator can do about a refused call, by call and errno")
{
    using base::Error;
    CHECK(std::string(hint_for(Error("BPF_MAP_CREATE", "map 'sock_hash'", EPERM))).find("needs root") !=
          std::string::npos);
    CHECK(std::string(hint_for(Error("mount", "bpffs", EPERM))).find("needs root") != std::string::npos);
    CHECK(std::string(hint_for(Error("BPF_MAP_CREATE", "map 'sock_hash'", ENOMEM))).find("lower --max-sockets") !=
          std::string::npos);
    CHECK(std::string(hint_for(Error("BPF_LINK_CREATE", "", E2BIG))).find("Linux 5.15 or newer") != std::string::npos);
    CHECK(std::string(hint_for(Error("BPF_LINK_CREATE", "", EINVAL))).find("lacks a feature") != std::string::npos);
    CHECK(std::string(hint_for(Error("BPF_MAP_CREATE", "map 'x'", ENOSYS))).find("CONFIG_BPF_SYSCALL") !=
          std::string::npos);
    // EINVAL outside bpf(2), the verifier's EACCES and our own errors get no guess.
    CHECK(hint_for(Error("mount", "cgroup2", EINVAL)) == nullptr);
    CHECK(hint_for(Error("BPF_PROG_LOAD", "program 'x'", EACCES)) == nullptr);
    CHECK(hint_for(Error("ELF header: not an ELF file (bad magic)")) == nullptr);
}

TEST_CASE("describe_error appends the very hint of hint_for, so the two cannot drift apart")
{
    using base::Error;
    for (const auto& e : {Error("BPF_MAP_CREATE", "map 'sock_hash'", EPERM), Error("BPF_MAP_CREATE", "map 'x'", ENOMEM),
                          Error("BPF_LINK_CREATE", "", E2BIG), Error("BPF_LINK_CREATE", "", EINVAL),
                          Error("BPF_MAP_CREATE", "map 'x'", ENOSYS)}) {
        CAPTURE(e.what());
        REQUIRE(hint_for(e) != nullptr);
        CHECK(describe_error(e) == std::string(e.what()) + " (" + hint_for(e) + ")");
    }
}

TEST_CASE("a tracing program asks for the kernel's BTF and for itself on its target, not for a bare program type")
{
    const char* path = std::getenv("SOCKREDIR_TRACE_TP_OBJECT");
    REQUIRE_MESSAGE(path != nullptr, "meson sets SOCKREDIR_TRACE_TP_OBJECT");
    const auto reqs = kernel_requirements(ebpf::open_object(base::read_file_bytes(path)));
    const auto n = names(reqs);
    CHECK(has(n, "kernel BTF (/sys/kernel/btf/vmlinux)"));
    CHECK(has(n, "tp_btf program on sock_recv_length"));
    // A tracing program cannot be loaded without a target: its type and helpers are asked with it, whole.
    CHECK_FALSE(has(n, "program type tracing"));
    for (const auto& r : reqs)
        if (r.probe == Requirement::Probe::Tracing) {
            CHECK(r.arg == BPF_TRACE_RAW_TP);
            CHECK(r.target == "sock_recv_length");
            CHECK(r.needs == std::vector<std::string>{"kernel BTF (/sys/kernel/btf/vmlinux)"});
        }
}

TEST_CASE("what only the optional eviction programs ask is reported, marked optional, and never changes the verdict")
{
    const auto reqs = kernel_requirements(ebpf::open_object(test::real_object()));
    const auto find = [&](const std::string& name) {
        const auto r = std::find_if(reqs.begin(), reqs.end(), [&](const Requirement& q) { return q.name == name; });
        REQUIRE_MESSAGE(r != reqs.end(), name);
        return *r;
    };
    CHECK(find("iter program on sockmap").optional.find(SOCKREDIR_PROG_UNMAP) != std::string::npos);
    CHECK_FALSE(find("kernel BTF (/sys/kernel/btf/vmlinux)").optional.empty());
    CHECK_FALSE(find("program type sched_cls").optional.empty());
    CHECK_FALSE(find("helper bpf_skc_to_tcp_sock in sched_cls").optional.empty());
    // What the required programs ask stays required, also where an optional one asks it too.
    CHECK(find("program type sk_msg").optional.empty());
    CHECK(find("map type sockhash").optional.empty());
    CHECK(find("map type array").optional.empty());

    // A kernel that refuses the iterator and the classifier can run sockredir; the report says what goes without.
    FakeKernel kernel;
    kernel.no_prog_types = {BPF_PROG_TYPE_TRACING, BPF_PROG_TYPE_SCHED_CLS};
    const auto report = probe_real();
    CHECK(can_run(report));
    CHECK(verdict(report) == "sockredir can run here");
    const auto& iter = line(report, "iter program on sockmap");
    CHECK(iter.state == FeatureState::Missing);
    const auto text = format_report(report);
    CHECK(text.find("MISSING") == std::string::npos);
    CHECK(text.find("iter program on sockmap") != std::string::npos);
    CHECK(text.find("(optional: " + iter.optional + ")") != std::string::npos);
}

TEST_CASE("attach's verdict asks nothing of what only the optional programs need")
{
    FakeKernel kernel;
    const auto report = probe_for_verdict(test::real_object());
    for (const auto& f : report.features) {
        CAPTURE(f.name);
        CHECK(f.optional.empty());
        CHECK(f.name != "iter program on sockmap");
        CHECK(f.name != "kernel BTF (/sys/kernel/btf/vmlinux)");
    }
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_TRACING) == 0);
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_SCHED_CLS) == 0);
}

TEST_CASE("what the kernel offers beyond the object is reported after the verdict and never changes it")
{
    ProbeReport r;
    r.features.push_back({"program type sk_msg", FeatureState::Ok, {}, {}});
    r.extras.push_back({"fexit program on sock_recvmsg", FeatureState::Missing,
                        "BPF_PROG_LOAD: Operation not permitted", "this kernel refuses it"});
    CHECK(can_run(r));
    CHECK(verdict(r) == "sockredir can run here");
    const auto text = format_report(r);
    const auto verdict_at = text.find("verdict: sockredir can run here\n");
    const auto beyond_at = text.find("beyond this object (not part of the verdict):\n");
    REQUIRE(verdict_at != std::string::npos);
    REQUIRE(beyond_at != std::string::npos);
    CHECK(verdict_at < beyond_at);
    CHECK(text.find("  fexit program on sock_recvmsg ") != std::string::npos);
    CHECK(text.find("no: BPF_PROG_LOAD: Operation not permitted") != std::string::npos);
    CHECK(text.find("MISSING") == std::string::npos);
}
