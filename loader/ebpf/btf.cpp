// BTF and the kernel: BPF_BTF_LOAD with libbpf's sanitizing fallback, the kernel's BTF, tracing targets.
#include "loader/ebpf/btf.hpp"

#include <linux/btf.h>

#include <cerrno>
#include <cstring>

#include "loader/base/file.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::ebpf {

namespace {

elf::BtfType int_type(elf::Btf& b, const char* name)
{
    elf::BtfType t;
    t.kind = BTF_KIND_INT;
    t.name_off = b.add_string(name);
    t.size_or_type = 4;
    t.int_data = (BTF_INT_SIGNED << 24) | 32;
    return t;
}

// Whether the kernel loads `b` (the probe blobs of libbpf's FEAT_BTF_* in its own words).
bool kernel_loads(const elf::Btf& b)
{
    try {
        const auto blob = elf::encode(b);
        Fd fd = sys::btf_load(blob);
        return true;
    } catch (const Error& e) {
        if (e.code() == EPERM)
            throw; // the caller's privileges, not the kind
        return false;
    }
}

// [1] int, [2] FUNC_PROTO int(void), [3] FUNC 'f' of linkage `linkage`.
bool probe_func(uint16_t linkage)
{
    elf::Btf b;
    const uint32_t i = b.add_type(int_type(b, "int"));
    elf::BtfType proto;
    proto.kind = BTF_KIND_FUNC_PROTO;
    proto.size_or_type = i;
    const uint32_t p = b.add_type(proto);
    elf::BtfType f;
    f.kind = BTF_KIND_FUNC;
    f.name_off = b.add_string("f");
    f.vlen = linkage;
    f.size_or_type = p;
    b.add_type(f);
    return kernel_loads(b);
}

// [1] int, [2] VAR 'v' int, [3] DATASEC `name` { v }.
bool probe_datasec(const char* name)
{
    elf::Btf b;
    const uint32_t i = b.add_type(int_type(b, "int"));
    elf::BtfType v;
    v.kind = BTF_KIND_VAR;
    v.name_off = b.add_string("v");
    v.size_or_type = i;
    v.linkage = BTF_VAR_GLOBAL_ALLOCATED;
    const uint32_t var = b.add_type(v);
    elf::BtfType d;
    d.kind = BTF_KIND_DATASEC;
    d.name_off = b.add_string(name);
    d.size_or_type = 4;
    d.vars.push_back({var, 0, 4});
    d.vlen = 1;
    b.add_type(d);
    return kernel_loads(b);
}

bool probe_kind(uint32_t kind)
{
    elf::Btf b;
    const uint32_t i = b.add_type(int_type(b, "int"));
    elf::BtfType t;
    t.kind = kind;
    switch (kind) {
    case BTF_KIND_FLOAT:
        t.name_off = b.add_string("float");
        t.size_or_type = 4;
        break;
    case BTF_KIND_DECL_TAG: {
        elf::BtfType s;
        s.kind = BTF_KIND_STRUCT;
        s.name_off = b.add_string("s");
        s.size_or_type = 4;
        s.members.push_back({b.add_string("m"), i, 0});
        s.vlen = 1;
        t.size_or_type = b.add_type(s);
        t.name_off = b.add_string("tag");
        t.component_idx = -1;
        break;
    }
    case BTF_KIND_TYPE_TAG: {
        t.name_off = b.add_string("tag");
        t.size_or_type = i;
        const uint32_t tag = b.add_type(t);
        elf::BtfType ptr;
        ptr.kind = BTF_KIND_PTR;
        ptr.size_or_type = tag;
        b.add_type(ptr);
        return kernel_loads(b);
    }
    case BTF_KIND_ENUM64:
        t.name_off = b.add_string("e");
        t.size_or_type = 8;
        t.enum_values.push_back({b.add_string("v"), 1});
        t.vlen = 1;
        break;
    default:
        return true;
    }
    b.add_type(t);
    return kernel_loads(b);
}

} // namespace

std::vector<std::byte> minimal_btf()
{
    elf::Btf b;
    b.add_type(int_type(b, "int"));
    return elf::encode(b);
}

elf::BtfKernelSupport probe_btf_support(const elf::Btf& btf)
{
    bool func = false, func_global = false, datasec = false, qmark = false, fl = false, decl = false, ttag = false,
         e64 = false;
    for (const auto& t : btf.types()) {
        func = func || t.kind == BTF_KIND_FUNC || t.kind == BTF_KIND_FUNC_PROTO;
        func_global = func_global || (t.kind == BTF_KIND_FUNC && t.vlen == BTF_FUNC_GLOBAL);
        datasec = datasec || t.kind == BTF_KIND_DATASEC || t.kind == BTF_KIND_VAR;
        fl = fl || t.kind == BTF_KIND_FLOAT;
        decl = decl || t.kind == BTF_KIND_DECL_TAG;
        ttag = ttag || t.kind == BTF_KIND_TYPE_TAG;
        e64 = e64 || t.kind == BTF_KIND_ENUM64 || (t.kind == BTF_KIND_ENUM && t.kflag);
    }
    for (uint32_t id = 1; id < btf.types().size(); ++id)
        qmark = qmark || (btf.type(id).kind == BTF_KIND_DATASEC && btf.name(id).substr(0, 1) == "?");
    elf::BtfKernelSupport k;
    k.func = !func || probe_func(BTF_FUNC_STATIC);
    k.func_global = !func_global || !k.func || probe_func(BTF_FUNC_GLOBAL);
    k.datasec = !datasec || probe_datasec(".data");
    k.qmark_datasec = !qmark || !k.datasec || probe_datasec("?.data");
    k.float_ = !fl || probe_kind(BTF_KIND_FLOAT);
    k.decl_tag = !decl || probe_kind(BTF_KIND_DECL_TAG);
    k.type_tag = !ttag || probe_kind(BTF_KIND_TYPE_TAG);
    k.enum64 = !e64 || probe_kind(BTF_KIND_ENUM64);
    return k;
}

Fd load_btf(const elf::Btf& btf)
{
    const auto blob = elf::encode(btf);
    try {
        return sys::btf_load(blob);
    } catch (const Error& first) {
        if (first.code() == EPERM)
            throw;
        // Refused as it is: sanitize what this kernel lacks, as libbpf does before every load, and say why if
        // that is refused too.
        const auto support = probe_btf_support(btf);
        if (support.all())
            throw first.rephrased("loading the object's BTF");
        elf::Btf copy = btf;
        elf::sanitize(copy, support);
        const auto sanitized = elf::encode(copy);
        std::vector<char> log(1U << 16);
        try {
            return sys::btf_load(sanitized, log);
        } catch (const Error& e) {
            throw e.rephrased("loading the object's BTF (sanitized for this kernel)",
                              std::string(log.data(), ::strnlen(log.data(), log.size())));
        }
    }
}

elf::Btf read_kernel_btf(const std::string& path)
{
    std::vector<std::byte> bytes;
    try {
        bytes = base::read_file_bytes(path);
    } catch (const Error& e) {
        if (e.code() == ENOENT)
            throw Error("this kernel has no BTF (" + path +
                            " is missing): tracing programs and CO-RE need CONFIG_DEBUG_INFO_BTF=y",
                        ENOENT);
        throw;
    }
    return elf::parse_btf(bytes, path);
}

uint32_t attach_btf_id(const elf::Btf& kernel, uint32_t expected_attach_type, const std::string& name)
{
    if (expected_attach_type == BPF_TRACE_RAW_TP) {
        if (const auto id = kernel.find(BTF_KIND_TYPEDEF, "btf_trace_" + name))
            return *id;
        throw Error("tracepoint '" + name + "': not in this kernel's BTF (no typedef btf_trace_" + name + ")");
    }
    if (expected_attach_type == BPF_TRACE_ITER) {
        if (const auto id = kernel.find(BTF_KIND_FUNC, "bpf_iter_" + name))
            return *id;
        throw Error("iterator '" + name + "': not in this kernel's BTF (no function bpf_iter_" + name + ")");
    }
    if (const auto id = kernel.find(BTF_KIND_FUNC, name))
        return *id;
    throw Error("function '" + name + "': not in this kernel's BTF");
}

} // namespace sockredir::ebpf
