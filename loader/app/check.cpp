// sockredir's check: the requirement list read off the object, the generic probes of loader/ebpf/features run in
// prerequisite order, one table of what provides what, and the verdict.
#include "loader/app/check.hpp"

#include "loader/app/contract.hpp"
#include "loader/app/hints.hpp"

#include <linux/bpf.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/features.hpp"
#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/types.hpp"

namespace sockredir::app {

using base::Error;

namespace {

// --- what provides what: the one place the operator's remedies are written ------------------------------------------

// What a caller without privileges needs: the hint table's EPERM row, as describe_error gives it.
std::string privileges_hint()
{
    return hint_for({}, EPERM);
}
// The build options of every kernel feature sockredir needs (README "Kernel requirements"); the release of each
// feature comes from loader/ebpf's tables.
constexpr const char* kHintKernelBuild = "built with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF and CONFIG_NET_SOCK_MSG";
constexpr const char* kHintBpf = "CONFIG_BPF_SYSCALL=y";
constexpr const char* kHintCgroup2 = "CONFIG_CGROUPS=y";
constexpr const char* kHintProc = "mount /proc";
constexpr const char* kHintTracingPolicy =
    "this kernel refuses it even with privileges (lockdown, an LSM or a hardened kernel); tp_btf may still load";

// The names of the features other features need.
constexpr const char* kBpfName = "bpf(2) system call";
constexpr const char* kPrivilegesName = "privileges";
constexpr const char* kBtfName = "BTF loading (BPF_BTF_LOAD)";
constexpr const char* kLinkName = "cgroup BPF links (BPF_LINK_CREATE)";
constexpr const char* kKernelBtfName = "kernel BTF (/sys/kernel/btf/vmlinux)";

// --- features -------------------------------------------------------------------------------------------------------

std::string errno_text(int err)
{
    return err == 0 ? std::string("failed") : std::string(std::strerror(err));
}

Feature ok(std::string name, std::string detail = {})
{
    return {std::move(name), FeatureState::Ok, std::move(detail), {}};
}

Feature missing(std::string name, std::string detail, std::string hint)
{
    return {std::move(name), FeatureState::Missing, std::move(detail), std::move(hint)};
}

Feature not_probed(std::string name, const std::string& because)
{
    return {std::move(name), FeatureState::NotProbed, "needs " + because, {}};
}

// What provides a kernel feature a probe found missing: the caller's remedy where the refusal was about the caller
// or the kernel as a whole, else the release that brought the feature and the build options.
std::string kernel_hint(const ebpf::ProbeResult& p)
{
    if (p.err != EINVAL)
        if (const char* h = hint_for(p.call, p.err))
            return h;
    if (p.since == nullptr)
        return kHintKernelBuild;
    return std::string("Linux ") + p.since + "+; " + kHintKernelBuild;
}

Feature feature_of(std::string name, const ebpf::ProbeResult& p)
{
    if (p.ok())
        return ok(std::move(name));
    std::string detail;
    if (p.call.empty() && !p.reason.empty())
        detail = p.reason; // refused before any call: a missing kernel BTF, a target it lacks
    else if (p.call.empty())
        detail = p.err == EOPNOTSUPP ? "this loader cannot probe it" : errno_text(p.err);
    else
        detail = p.call + ": " + errno_text(p.err) + (p.reason.empty() ? "" : " (" + p.reason + ")");
    return missing(std::move(name), std::move(detail), kernel_hint(p));
}

// The kernel's BTF, read once per report and only when a probe needs it (5 MB to read and parse).
class KernelBtf {
public:
    const elf::Btf* get()
    {
        if (!tried_) {
            tried_ = true;
            try {
                btf_ = ebpf::read_kernel_btf();
            } catch (const Error& e) {
                error_ = e.what();
                err_ = e.code();
            }
        }
        return btf_ ? &*btf_ : nullptr;
    }
    // As ebpf::have_kernel_btf would say, from the one read.
    ebpf::ProbeResult probe()
    {
        ebpf::ProbeResult r;
        r.since = "5.4";
        if (get() != nullptr) {
            r.state = ebpf::Support::Ok;
            return r;
        }
        r.err = err_;
        r.reason = error_;
        return r;
    }

private:
    bool tried_ = false;
    std::optional<elf::Btf> btf_;
    std::string error_;
    int err_ = 0;
};

const char* tracing_kind(uint32_t expected_attach_type)
{
    switch (expected_attach_type) {
    case BPF_TRACE_RAW_TP:
        return "tp_btf";
    case BPF_TRACE_FENTRY:
        return "fentry";
    case BPF_TRACE_FEXIT:
        return "fexit";
    case BPF_TRACE_ITER:
        return "iter";
    default:
        return "tracing";
    }
}

ebpf::ProbeResult ask(const Requirement& r, KernelBtf& kernel)
{
    switch (r.probe) {
    case Requirement::Probe::KernelBtf:
        return kernel.probe();
    case Requirement::Probe::Tracing:
        if (const elf::Btf* btf = kernel.get())
            return ebpf::have_tracing(r.arg, r.target, *btf);
        return kernel.probe();
    case Requirement::Probe::ProgType:
        return ebpf::have_prog_type(r.type);
    case Requirement::Probe::MapType:
        return ebpf::have_map_type(r.type);
    case Requirement::Probe::Helper:
        return ebpf::have_helper(r.type, r.arg);
    case Requirement::Probe::BtfLoad:
        return ebpf::have_btf_load();
    case Requirement::Probe::CgroupLink:
        return ebpf::have_cgroup_link(r.type, r.arg);
    }
    return {};
}

// Probes `r` unless one of the features it needs, among those already probed, is not there.
Feature run(const Requirement& r, const std::vector<Feature>& done, KernelBtf& kernel)
{
    for (const auto& need : r.needs) {
        const auto f = std::find_if(done.begin(), done.end(), [&](const Feature& d) { return d.name == need; });
        if (f == done.end() || f->state != FeatureState::Ok)
            return not_probed(r.name, need);
    }
    const auto p = ask(r, kernel);
    auto f = feature_of(r.name, p);
    // Privileges were checked first: an EPERM here is the kernel's policy on tracing (kernel-notes section 6).
    if (r.probe == Requirement::Probe::Tracing && !p.ok() && p.err == EPERM)
        f.hint = kHintTracingPolicy;
    return f;
}

std::string program_type_name(uint32_t type)
{
    return "program type " + ebpf::prog_type_label(type);
}

// --- filesystems ----------------------------------------------------------------------------------------------------

std::string read_or_empty(const char* path)
{
    try {
        return base::read_file_text(path);
    } catch (const Error&) {
        return {};
    }
}

// A filesystem that is not mounted: fine when the kernel knows it, since attach mounts it (`where`).
Feature mountable(const std::string& name, const char* fs, const std::string& where, const char* hint)
{
    const auto filesystems = read_or_empty("/proc/filesystems");
    if (filesystems.empty())
        return missing(name, "cannot read /proc/filesystems", kHintProc);
    if (has_filesystem(filesystems, fs))
        return ok(name, "not mounted; attach mounts it " + where);
    return missing(name, "not in /proc/filesystems", hint);
}

Feature cgroup2_feature()
{
    const std::string name = "cgroup2 (mounted or mountable)";
    if (const auto found = ebpf::find_cgroup2_mount(read_or_empty("/proc/self/mountinfo")))
        return ok(name, "mounted at " + *found);
    return mountable(name, "cgroup2", "under /sys/fs/cgroup", kHintCgroup2);
}

Feature bpffs_feature()
{
    const std::string name = "bpffs (mounted or mountable)";
    if (ebpf::is_bpffs(ebpf::kDefaultBpffs))
        return ok(name, std::string("mounted at ") + ebpf::kDefaultBpffs);
    return mountable(name, "bpf", std::string("at ") + ebpf::kDefaultBpffs, kHintBpf);
}

bool has_cap(const __user_cap_data_struct (&data)[2], int cap)
{
    return (data[cap / 32].effective & (1U << (cap % 32))) != 0;
}

// What the programs of `spec` that `include` selects ask of the kernel, with the maps and the cgroup link.
template <typename Include> std::vector<Requirement> requirements_of(const ebpf::CollectionSpec& spec, Include include)
{
    std::vector<Requirement> out;
    const auto add = [&](Requirement r) {
        for (const auto& have : out)
            if (have.name == r.name)
                return; // a second program or map of a type asks nothing new
        out.push_back(std::move(r));
    };
    std::vector<uint32_t> prog_types;
    // A tracing program is probed whole, on its target (below): its type and helpers cannot be asked without one.
    for (const auto& p : spec.programs)
        if (include(p) && p.type != BPF_PROG_TYPE_TRACING &&
            std::find(prog_types.begin(), prog_types.end(), p.type) == prog_types.end())
            prog_types.push_back(p.type);

    for (auto type : prog_types)
        add({program_type_name(type), Requirement::Probe::ProgType, type, 0, {}, {}});
    const bool btf = std::any_of(spec.maps.begin(), spec.maps.end(), [](const auto& m) { return m.needs_btf; });
    if (btf)
        add({kBtfName, Requirement::Probe::BtfLoad, 0, 0, {}, {}});
    for (const auto& m : spec.maps) {
        std::vector<std::string> needs;
        if (m.needs_btf)
            needs.push_back(kBtfName);
        add({"map type " + ebpf::map_type_label(m.type), Requirement::Probe::MapType, m.type, 0, std::move(needs), {}});
    }
    // Each helper in each program type that calls it: a kernel may offer a helper to one type and not another.
    for (auto type : prog_types) {
        std::vector<uint32_t> ids;
        for (const auto& p : spec.programs)
            if (include(p) && p.type == type)
                for (auto id : ebpf::insn::helper_calls(p.insns))
                    ids.push_back(id);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (auto id : ids)
            add({"helper " + ebpf::helper_name(id) + " in " + ebpf::prog_type_label(type),
                 Requirement::Probe::Helper,
                 type,
                 id,
                 {program_type_name(type)},
                 {}});
    }
    // Tracing programs attach by kernel BTF id: the kernel's BTF, then each kind on its target. sockredir's
    // receive-path observers are alternatives (attach takes the first that loads), probed beyond the object.
    for (const auto& p : spec.programs) {
        if (!include(p) || p.type != BPF_PROG_TYPE_TRACING)
            continue;
        add({kKernelBtfName, Requirement::Probe::KernelBtf, 0, 0, {}, {}});
        add({std::string(tracing_kind(p.expected_attach_type)) + " program on " + p.attach_to,
             Requirement::Probe::Tracing,
             p.type,
             p.expected_attach_type,
             {kKernelBtfName},
             p.attach_to});
    }
    // attach links the sock_ops program to the cgroup (attach.cpp); an object without it is probed with the
    // generic cgroup program, and attach refuses the object by the contract.
    if (const auto* linked = spec.programs.find(SOCKREDIR_PROG_SOCKOPS))
        add({kLinkName,
             Requirement::Probe::CgroupLink,
             linked->type,
             linked->attach_type,
             {program_type_name(linked->type)},
             {}});
    else
        add({kLinkName, Requirement::Probe::CgroupLink, BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, {}, {}});
    return out;
}

bool has_requirement(const std::vector<Requirement>& list, const std::string& name)
{
    return std::any_of(list.begin(), list.end(), [&](const Requirement& r) { return r.name == name; });
}

} // namespace

std::vector<Requirement> kernel_requirements(const ebpf::CollectionSpec& spec)
{
    auto all = requirements_of(spec, [](const ebpf::ProgramSpec&) { return true; });
    const auto needed =
        requirements_of(spec, [](const ebpf::ProgramSpec& p) { return without_program(p.name) == nullptr; });
    // What only optional programs ask is optional, and says what goes without it.
    for (auto& r : all) {
        if (has_requirement(needed, r.name))
            continue;
        for (const auto& p : spec.programs) {
            const char* without = without_program(p.name);
            if (without != nullptr &&
                has_requirement(requirements_of(spec, [&](const ebpf::ProgramSpec& q) { return &q == &p; }), r.name)) {
                r.optional = without;
                break;
            }
        }
    }
    return all;
}

Privileges current_privileges()
{
    Privileges p;
    p.root = ::geteuid() == 0;
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) {
        p.lacking = "capget: " + errno_text(errno);
        return p;
    }
    std::string lacking;
    // CAP_SYS_ADMIN stands in for CAP_BPF (bpf_capable()) on every kernel, and mounting needs it anyway.
    for (const auto& [cap, name] : {std::pair{CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}})
        if (!has_cap(data, cap))
            lacking += (lacking.empty() ? "" : ", ") + std::string(name);
    if (!lacking.empty())
        p.lacking = "lacking " + lacking;
    return p;
}

ProbeReport probe_kernel(std::span<const std::byte> object)
{
    return probe_kernel(object, current_privileges());
}

namespace {

ProbeReport probe(std::span<const std::byte> object, const Privileges& privileges, bool with_optional);

} // namespace

ProbeReport probe_kernel(std::span<const std::byte> object, const Privileges& privileges)
{
    return probe(object, privileges, true);
}

ProbeReport probe_for_verdict(std::span<const std::byte> object)
{
    return probe(object, current_privileges(), false);
}

namespace {

ProbeReport probe(std::span<const std::byte> object, const Privileges& privileges, bool with_optional)
{
    auto requirements = kernel_requirements(ebpf::open_object(object));
    if (!with_optional)
        std::erase_if(requirements, [](const Requirement& r) { return !r.optional.empty(); });
    ProbeReport report;
    utsname u{};
    if (::uname(&u) == 0)
        report.kernel = std::string(u.sysname) + " " + u.release;

    auto& f = report.features;
    // Any bpf(2) call tells whether the system call exists and whether this caller may use it; an array map is the
    // most basic one.
    const auto any = ebpf::have_map_type(BPF_MAP_TYPE_ARRAY);
    std::optional<std::string> blocked; // the feature every kernel probe needs and this kernel or caller lacks
    if (any.err == ENOSYS) {
        f.push_back(missing(kBpfName, "bpf: " + errno_text(any.err), kHintBpf));
        f.push_back(not_probed(kPrivilegesName, kBpfName));
        blocked = kBpfName;
    } else {
        f.push_back(ok(kBpfName));
        if (privileges.lacking) {
            f.push_back(missing(kPrivilegesName, *privileges.lacking, privileges_hint()));
            blocked = kPrivilegesName;
        } else if (any.err == EPERM || any.err == EACCES) {
            f.push_back(missing(kPrivilegesName,
                                "bpf(2) refused: " + errno_text(any.err) + " (a user namespace, lockdown or an LSM?)",
                                privileges_hint()));
            blocked = kPrivilegesName;
        } else {
            f.push_back(ok(kPrivilegesName, privileges.root ? "root" : "capabilities present"));
        }
    }
    KernelBtf kernel;
    for (const auto& r : requirements) {
        f.push_back(blocked ? not_probed(r.name, *blocked) : run(r, f, kernel));
        f.back().optional = r.optional;
    }
    f.push_back(cgroup2_feature());
    f.push_back(bpffs_feature());

    return report;
}

} // namespace

std::optional<std::string> blocking_feature(const ProbeReport& report)
{
    for (const auto& f : report.features)
        if ((f.name == kBpfName || f.name == kPrivilegesName) && f.state != FeatureState::Ok)
            return f.name;
    return std::nullopt;
}

void probe_beyond(ProbeReport& report)
{
    // Blocked like the object's probes: without bpf(2) or privileges nothing more can be asked.
    const auto blocked = blocking_feature(report);
    KernelBtf kernel;

    // Beyond the object: which tracing programs this kernel allows on the receive path, where per-connection state
    // will be kept (kernel-notes sections 5 and 6). Some kernels load tp_btf and refuse fentry/fexit.
    const std::vector<Requirement> extras = {
        {kKernelBtfName, Requirement::Probe::KernelBtf, 0, 0, {}, {}},
        {"tp_btf program on sock_recv_length",
         Requirement::Probe::Tracing,
         BPF_PROG_TYPE_TRACING,
         BPF_TRACE_RAW_TP,
         {kKernelBtfName},
         "sock_recv_length"},
        {"fentry program on sock_recvmsg",
         Requirement::Probe::Tracing,
         BPF_PROG_TYPE_TRACING,
         BPF_TRACE_FENTRY,
         {kKernelBtfName},
         "sock_recvmsg"},
        {"fexit program on sock_recvmsg",
         Requirement::Probe::Tracing,
         BPF_PROG_TYPE_TRACING,
         BPF_TRACE_FEXIT,
         {kKernelBtfName},
         "sock_recvmsg"},
    };
    for (const auto& r : extras)
        report.extras.push_back(blocked ? not_probed(r.name, *blocked) : run(r, report.extras, kernel));
}

bool has_filesystem(std::string_view proc_filesystems, std::string_view name)
{
    size_t start = 0;
    while (start < proc_filesystems.size()) {
        size_t end = proc_filesystems.find('\n', start);
        if (end == std::string_view::npos)
            end = proc_filesystems.size();
        auto line = proc_filesystems.substr(start, end - start);
        start = end + 1;
        // "nodev\tcgroup2" or "\text4": the name is the last tab-separated field.
        const auto tab = line.rfind('\t');
        if (tab != std::string_view::npos)
            line = line.substr(tab + 1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
            line.remove_suffix(1);
        if (line == name)
            return true;
    }
    return false;
}

bool can_run(const ProbeReport& report)
{
    if (report.features.empty())
        return false;
    for (const auto& f : report.features)
        if (f.state != FeatureState::Ok && f.optional.empty())
            return false;
    return true;
}

std::string verdict(const ProbeReport& report)
{
    if (can_run(report))
        return "sockredir can run here";
    std::string names;
    std::vector<std::string> hints; // each part of each hint ("Linux 4.17+", the build options) once, in order
    for (const auto& f : report.features) {
        if (f.state != FeatureState::Missing || !f.optional.empty())
            continue;
        names += (names.empty() ? "" : ", ") + f.name;
        std::string_view rest = f.hint;
        while (!rest.empty()) {
            const auto cut = rest.find("; ");
            const std::string part(rest.substr(0, cut));
            rest = cut == std::string_view::npos ? std::string_view{} : rest.substr(cut + 2);
            if (!part.empty() && std::find(hints.begin(), hints.end(), part) == hints.end())
                hints.push_back(part);
        }
    }
    if (names.empty())
        return "sockredir cannot run here: no feature could be probed";
    std::string joined;
    for (const auto& h : hints)
        joined += (joined.empty() ? "" : "; ") + h;
    return "sockredir cannot run here: missing " + names + (joined.empty() ? "" : " (" + joined + ")");
}

namespace {

std::string format_line(const Feature& f, const char* missing_word)
{
    // An optional feature is not missing for the verdict: "no", and what goes without it.
    const char* state = f.state == FeatureState::Ok        ? "ok"
                        : f.state == FeatureState::Missing ? (f.optional.empty() ? missing_word : "no")
                                                           : "-";
    std::string line = f.name;
    line.resize(std::max<size_t>(line.size() + 1, 44), ' ');
    line += state;
    if (f.state == FeatureState::NotProbed)
        line += " not probed: " + f.detail;
    else if (!f.detail.empty())
        line += ": " + f.detail;
    if (f.state != FeatureState::Ok && !f.optional.empty())
        line += " (optional: " + f.optional + ")";
    return line + "\n";
}

} // namespace

std::string format_report(const ProbeReport& report)
{
    std::string out;
    if (!report.kernel.empty())
        out += "kernel: " + report.kernel + "\n";
    for (const auto& f : report.features)
        out += format_line(f, "MISSING");
    out += "verdict: " + verdict(report) + "\n";
    if (!report.extras.empty()) {
        out += "beyond this object (not part of the verdict):\n";
        for (const auto& f : report.extras)
            out += "  " + format_line(f, "no");
    }
    return out;
}

} // namespace sockredir::app
