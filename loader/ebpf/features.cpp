// The probes: programs built with insn.hpp and loaded with load_with_log, maps shaped by the table of types.hpp.
#include "loader/ebpf/features.hpp"

#include <cerrno>

#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/sys.hpp"
#include "loader/ebpf/types.hpp"

namespace sockredir::ebpf {

namespace {

// GPL-compatible, so that GPL-only helpers are probed as they are, not refused for the license.
constexpr const char* kLicense = "Dual MIT/GPL";

// The releases of what the tables of types.hpp do not cover.
constexpr const char* kSinceCgroupLink = "5.7";
constexpr const char* kSinceBtf = "4.18";
constexpr const char* kSinceKernelBtf = "5.4";
constexpr const char* kSinceTpBtf = "5.5";
constexpr const char* kSinceFentry = "5.5";
// BPF iterators ("bpf: implement bpf_seq_read() for bpf iterator"); a target can be younger (sockmap: 5.10).
constexpr const char* kSinceIter = "5.8";

ProbeResult ok(const char* since)
{
    ProbeResult r;
    r.state = Support::Ok;
    r.since = since;
    return r;
}

ProbeResult missing(const Error& e, const char* since)
{
    ProbeResult r;
    r.call = e.call();
    r.err = e.code();
    r.reason = verifier_reason(e.log());
    r.since = since;
    return r;
}

// A type this loader has no way to probe: say so rather than guess.
ProbeResult unprobeable(const char* since)
{
    ProbeResult r;
    r.err = EOPNOTSUPP;
    r.since = since;
    return r;
}

Fd load(uint32_t type, uint32_t expected_attach_type, const std::vector<bpf_insn>& insns)
{
    sys::ProgLoadArgs args;
    args.type = type;
    args.expected_attach_type = expected_attach_type;
    args.insns = insns;
    args.license = kLicense;
    args.name = kProbeObjectName;
    return load_with_log(std::move(args));
}

// The verifier's words for a helper it does not offer to the program type: "invalid func unknown#N" (an id it does
// not know at all), "unknown func bpf_x#N" (before Linux 6.10), "program of this type cannot use helper bpf_x#N".
bool helper_refused(std::string_view reason)
{
    for (const char* words : {"invalid func ", "unknown func ", "program of this type cannot use helper "})
        if (reason.find(words) != std::string_view::npos)
            return true;
    return false;
}

} // namespace

ProbeResult have_prog_type(uint32_t type)
{
    const ProgTypeInfo* t = find_prog_type(type);
    const char* since = t != nullptr ? t->since : nullptr;
    if (t != nullptr && !t->probeable)
        return unprobeable(since);
    try {
        load(type, t != nullptr ? t->expected_attach_type : 0, insn::program(insn::mov_imm(0, 0), insn::exit_insn()));
        return ok(since);
    } catch (const Error& e) {
        return missing(e, since);
    }
}

ProbeResult have_map_type(uint32_t type)
{
    const MapTypeInfo* t = find_map_type(type);
    if (t != nullptr && !t->probeable)
        return unprobeable(t->since);
    sys::MapCreateArgs args;
    args.type = type;
    // A type the table does not know gets the shape most types take, and the kernel's answer.
    args.key_size = t != nullptr ? t->key_size : 4;
    args.value_size = t != nullptr ? t->value_size : 4;
    args.max_entries = t != nullptr ? t->max_entries : 1;
    args.flags = t != nullptr ? t->flags : 0;
    args.name = kProbeObjectName;
    const char* since = t != nullptr ? t->since : nullptr;
    try {
        Fd btf;
        if (t != nullptr && t->needs_btf) {
            const auto blob = minimal_btf();
            btf = sys::btf_load(blob);
            args.btf_fd = btf.get();
            args.btf_key_type_id = kBtfIntTypeId;
            args.btf_value_type_id = kBtfIntTypeId;
        }
        sys::map_create(args);
        return ok(since);
    } catch (const Error& e) {
        return missing(e, since);
    }
}

ProbeResult have_helper(uint32_t prog_type, uint32_t helper_id)
{
    const ProgTypeInfo* t = find_prog_type(prog_type);
    const char* since = helper_since(prog_type, helper_id);
    if (t != nullptr && !t->probeable)
        return unprobeable(since);
    try {
        load(prog_type, t != nullptr ? t->expected_attach_type : 0,
             insn::program(insn::call_helper(static_cast<int32_t>(helper_id)), insn::mov_imm(0, 0), insn::exit_insn()));
        return ok(since); // a helper that needs no arguments, or only the context r1 already holds
    } catch (const Error& e) {
        auto r = missing(e, since);
        if (!e.log().empty() && !helper_refused(r.reason)) {
            // The verifier went past the call's lookup and refused the arguments: the helper is there.
            r.state = Support::Ok;
            r.call.clear();
            r.err = 0;
        }
        return r;
    }
}

ProbeResult have_cgroup_link(uint32_t prog_type, uint32_t attach_type)
{
    try {
        const Fd prog = load(prog_type, attach_type, insn::program(insn::mov_imm(0, 0), insn::exit_insn()));
        try {
            // -1 is no descriptor at all: the kernel gets as far as fdget() only if it knows cgroup links.
            sys::link_create(prog.get(), -1, attach_type);
            return ok(kSinceCgroupLink); // not expected, but a link is a link
        } catch (const Error& e) {
            if (e.code() == EBADF)
                return ok(kSinceCgroupLink);
            return missing(e, kSinceCgroupLink);
        }
    } catch (const Error& e) {
        return missing(e, kSinceCgroupLink);
    }
}

ProbeResult have_btf_load()
{
    try {
        const auto blob = minimal_btf();
        sys::btf_load(blob);
        return ok(kSinceBtf);
    } catch (const Error& e) {
        return missing(e, kSinceBtf);
    }
}

std::string verifier_reason(std::string_view log)
{
    std::string reason;
    size_t start = 0;
    while (start < log.size()) {
        size_t end = log.find('\n', start);
        if (end == std::string_view::npos)
            end = log.size();
        auto line = log.substr(start, end - start);
        start = end + 1;
        while (!line.empty() && line.back() == ' ')
            line.remove_suffix(1);
        if (line.empty())
            continue;
        bool statistics = false;
        for (const char* prefix : {"processed ", "verification time", "stack depth", "max_states_per_insn"})
            statistics = statistics || line.rfind(prefix, 0) == 0;
        if (!statistics)
            reason = line;
    }
    return reason;
}

} // namespace sockredir::ebpf

namespace sockredir::ebpf {

ProbeResult have_kernel_btf(const std::string& path)
{
    try {
        (void)read_kernel_btf(path);
        return ok(kSinceKernelBtf);
    } catch (const Error& e) {
        ProbeResult r = missing(e, kSinceKernelBtf);
        r.reason = e.what();
        return r;
    }
}

ProbeResult have_tracing(uint32_t expected_attach_type, const std::string& target, const elf::Btf& kernel)
{
    const char* since = expected_attach_type == BPF_TRACE_RAW_TP ? kSinceTpBtf
                        : expected_attach_type == BPF_TRACE_ITER ? kSinceIter
                                                                 : kSinceFentry;
    uint32_t id = 0;
    try {
        id = attach_btf_id(kernel, expected_attach_type, target);
    } catch (const Error& e) {
        ProbeResult r;
        r.reason = e.what();
        r.since = since;
        return r;
    }
    sys::ProgLoadArgs args;
    args.type = BPF_PROG_TYPE_TRACING;
    args.expected_attach_type = expected_attach_type;
    const auto insns = insn::program(insn::mov_imm(0, 0), insn::exit_insn());
    args.insns = insns;
    args.license = kLicense;
    args.name = kProbeObjectName;
    args.attach_btf_id = id;
    try {
        load_with_log(std::move(args));
        return ok(since);
    } catch (const Error& e) {
        return missing(e, since);
    }
}

} // namespace sockredir::ebpf
