// Loading: maps first (created, then filled), then relocation, then BPF_PROG_LOAD with a verifier-log retry.
#include "loader/ebpf/collection.hpp"

#include <cstring>

#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::ebpf {

namespace {

// Large enough for the verifier's log of programs this size at log level 1.
constexpr size_t kVerifierLogSize = 1U << 20;

// BTF for a map type the kernel creates only with BTF. Until the object's own BTF is loaded, the one INT of
// minimal_btf() describes a 4-byte key and value.
void set_map_btf(const MapSpec& m, Collection& c, sys::MapCreateArgs& args)
{
    if (m.key_size != 4 || m.value_size != 4)
        throw Error("map '" + m.name + "': " + map_type_name(m.type) +
                    " needs BTF for its key and value, and this object has none for a " + std::to_string(m.key_size) +
                    "+" + std::to_string(m.value_size) + " byte entry");
    if (!c.btf) {
        const auto blob = minimal_btf();
        c.btf = sys::btf_load(blob);
    }
    args.btf_fd = c.btf.get();
    args.btf_key_type_id = kBtfIntTypeId;
    args.btf_value_type_id = kBtfIntTypeId;
}

Fd load_program(const CollectionSpec& spec, const ProgramSpec& p, const std::vector<bpf_insn>& insns)
{
    sys::ProgLoadArgs args;
    args.type = p.type;
    args.expected_attach_type = p.expected_attach_type;
    args.insns = insns;
    args.license = spec.license;
    args.name = p.name;
    try {
        return load_with_log(std::move(args));
    } catch (const Error& e) {
        const auto what = "program '" + p.name + "' (section '" + p.section + "')";
        if (e.log().empty())
            throw e.rephrased("loading " + what);
        throw e.rephrased("the verifier rejected " + what, e.log());
    }
}

} // namespace

Fd load_with_log(sys::ProgLoadArgs args)
{
    try {
        return sys::prog_load(args);
    } catch (const Error&) {
        // A transient failure loads now; a rejection fails again and brings the verifier's words with it.
    }
    std::vector<char> log(kVerifierLogSize);
    args.log = log;
    args.log_level = 1;
    try {
        return sys::prog_load(args);
    } catch (const Error& e) {
        throw e.rephrased("loading program '" + args.name + "'",
                          std::string(log.data(), ::strnlen(log.data(), log.size())));
    }
}

Collection create_maps(const CollectionSpec& spec)
{
    Collection c;
    for (const auto& m : spec.maps) {
        sys::MapCreateArgs args;
        args.type = m.type;
        args.key_size = m.key_size;
        args.value_size = m.value_size;
        args.max_entries = m.max_entries;
        args.flags = m.flags;
        args.name = m.name;
        if (m.needs_btf)
            set_map_btf(m, c, args);
        Fd fd = sys::map_create(args);
        for (const auto& e : m.contents)
            sys::map_update(fd.get(), e.key.data(), e.value.data(), BPF_ANY);
        c.maps.add({m.name, m.type, std::move(fd)});
    }
    return c;
}

std::vector<bpf_insn> relocate(const ProgramSpec& program, const std::unordered_map<std::string, int>& map_fds)
{
    std::vector<bpf_insn> insns = program.insns;
    for (const auto& r : program.maps) {
        const auto fd = map_fds.find(r.map);
        if (fd == map_fds.end())
            throw Error("program '" + program.name + "': refers to map '" + r.map + "', which was not created");
        if (r.insn + 1 >= insns.size())
            throw Error("program '" + program.name + "': relocation at instruction " + std::to_string(r.insn) +
                        " is out of range");
        bpf_insn& insn = insns[r.insn];
        // The kernel resolves src_reg = BPF_PSEUDO_MAP_FD + imm = fd to the map.
        insn.src_reg = BPF_PSEUDO_MAP_FD;
        insn.imm = fd->second;
        insns[r.insn + 1].imm = 0;
    }
    return insns;
}

void load_programs(const CollectionSpec& spec, Collection& collection)
{
    std::unordered_map<std::string, int> map_fds;
    for (const auto& m : collection.maps)
        map_fds.emplace(m.name, m.fd.get());
    for (const auto& p : spec.programs) {
        Fd fd = load_program(spec, p, relocate(p, map_fds));
        collection.programs.add({p.name, p.section, p.type, p.attach_type, std::move(fd)});
    }
}

Collection load_collection(const CollectionSpec& spec)
{
    Collection c = create_maps(spec);
    load_programs(spec, c);
    return c;
}

} // namespace sockredir::ebpf
