// The open phase: section names to program types, map types the loader can create, map references by name.
#include "loader/ebpf/spec.hpp"

#include <algorithm>
#include <cstring>

namespace sockredir::ebpf {

namespace {

// Program sections the loader knows, as libbpf names them (section_defs in libbpf.c). `prefix`: the section names
// the program's target after a '/' ("fexit/sock_recvmsg"), and must.
struct SectionType {
    const char* section;
    bool prefix;
    uint32_t prog_type;
    uint32_t expected_attach_type;
    uint32_t attach_type;
};

constexpr SectionType kSectionTypes[] = {
    {"sockops", false, BPF_PROG_TYPE_SOCK_OPS, 0, BPF_CGROUP_SOCK_OPS},
    {"sk_msg", false, BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, BPF_SK_MSG_VERDICT},
    // Run by the kernel around setsockopt(2) and getsockopt(2) of every socket of the cgroup they are linked to.
    {"cgroup/setsockopt", false, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, BPF_CGROUP_SETSOCKOPT},
    {"cgroup/getsockopt", false, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT, BPF_CGROUP_GETSOCKOPT},
    // A classifier (libbpf "tc"): the loader attaches it nowhere; its caller runs it with BPF_PROG_TEST_RUN.
    {"tc", false, BPF_PROG_TYPE_SCHED_CLS, 0, 0},
    // Tracing programs name their target after the '/': attached by BPF_RAW_TRACEPOINT_OPEN.
    {"tp_btf", true, BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, BPF_TRACE_RAW_TP},
    {"fentry", true, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, BPF_TRACE_FENTRY},
    {"fexit", true, BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, BPF_TRACE_FEXIT},
    // BPF iterators ("iter/sockmap", "iter/task"): tracing programs on the kernel's bpf_iter_<target>, linked by
    // BPF_LINK_CREATE with what they walk (iter.hpp), run by BPF_ITER_CREATE and read().
    {"iter", true, BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, BPF_TRACE_ITER},
};

const SectionType* section_type(const std::string& section)
{
    for (const auto& t : kSectionTypes) {
        const size_t n = std::strlen(t.section);
        if (t.prefix ? section.size() > n + 1 && section.compare(0, n, t.section) == 0 && section[n] == '/'
                     : section == t.section)
            return &t;
    }
    return nullptr;
}

std::string quoted(const std::string& s)
{
    return "'" + s + "'";
}

MapSpec map_spec(const elf::MapSpec& m)
{
    const auto what = "map " + quoted(m.name);
    const MapTypeInfo* t = find_map_type(m.type);
    if (t == nullptr || !t->creatable)
        throw Error(what + ": type " + map_type_name(m.type) + " is not supported by this loader");
    MapSpec s;
    s.name = m.name;
    s.type = m.type;
    s.key_size = m.key_size;
    s.value_size = m.value_size;
    s.max_entries = m.max_entries;
    s.flags = m.flags;
    s.needs_btf = t->needs_btf;
    s.btf_key_type_id = m.btf_key_type_id;
    s.btf_value_type_id = m.btf_value_type_id;
    return s;
}

ProgramSpec program_spec(elf::ProgramSpec& p, const elf::ObjectSpec& object)
{
    // libbpf's "?" prefix ("?fexit/sock_recvmsg"): a program not loaded unless asked for by name. Loaders that
    // load whole objects (bpftool prog loadall) leave it out; this one loads programs by name anyway.
    const std::string kind = p.section.size() > 1 && p.section[0] == '?' ? p.section.substr(1) : p.section;
    const SectionType* t = section_type(kind);
    if (t == nullptr) {
        std::string known;
        for (const auto& k : kSectionTypes)
            known += std::string(known.empty() ? "" : ", ") + k.section + (k.prefix ? "/NAME" : "");
        throw Error("section " + quoted(p.section) + ": program " + quoted(p.name) +
                    " has a program type this loader does not support (sections: " + known + ")");
    }
    ProgramSpec s;
    s.name = p.name;
    s.section = p.section;
    s.type = t->prog_type;
    s.expected_attach_type = t->expected_attach_type;
    s.attach_type = t->attach_type;
    if (t->prefix)
        s.attach_to = kind.substr(kind.find('/') + 1);
    // The parsed object is ours to take apart: its instructions and records move, they are not copied.
    s.insns = std::move(p.insns);
    s.func_info = std::move(p.func_info);
    s.line_info = std::move(p.line_info);
    s.core_relos = std::move(p.core_relos);
    for (const auto& r : p.relocations) {
        if (r.map >= object.maps.size())
            throw Error("section " + quoted(p.section) + ": relocation names map #" + std::to_string(r.map) + " of " +
                        std::to_string(object.maps.size()));
        s.maps.push_back({r.insn, object.maps[r.map].name});
    }
    return s;
}

} // namespace

void MapSpec::set_bytes(std::span<const std::byte> key, std::span<const std::byte> value)
{
    if (key.size() != key_size || value.size() != value_size)
        throw Error("map " + quoted(name) + ": an entry of " + std::to_string(key.size()) + "+" +
                    std::to_string(value.size()) + " bytes, the map holds " + std::to_string(key_size) + "+" +
                    std::to_string(value_size));
    for (auto& e : contents)
        if (e.key.size() == key.size() && std::memcmp(e.key.data(), key.data(), key.size()) == 0) {
            e.value.assign(value.begin(), value.end());
            return;
        }
    contents.push_back({{key.begin(), key.end()}, {value.begin(), value.end()}});
}

void CollectionSpec::set_max_entries(std::string_view map, uint32_t max_entries)
{
    maps.at(map).max_entries = max_entries;
}

CollectionSpec CollectionSpec::subset(std::span<const std::string> names) const
{
    CollectionSpec out;
    out.license = license;
    out.btf = btf;
    const auto wanted = [&](const std::string& name) {
        return std::find(names.begin(), names.end(), name) != names.end();
    };
    for (const auto& p : programs)
        if (wanted(p.name))
            out.programs.add(p);
    for (const auto& m : maps) {
        bool used = false;
        for (const auto& p : out.programs)
            for (const auto& r : p.maps)
                used = used || r.map == m.name;
        if (used)
            out.maps.add(m);
    }
    return out;
}

CollectionSpec make_collection_spec(elf::ObjectSpec object)
{
    CollectionSpec spec;
    spec.license = object.license;
    spec.btf = std::move(object.btf);
    for (const auto& m : object.maps)
        spec.maps.add(map_spec(m));
    for (auto& p : object.programs)
        spec.programs.add(program_spec(p, object));
    return spec;
}

CollectionSpec open_object(std::span<const std::byte> bytes)
{
    return make_collection_spec(elf::parse_object(bytes));
}

} // namespace sockredir::ebpf
