// Loading: maps first (created, then filled), then relocation, then BPF_PROG_LOAD with a verifier-log retry.
#include "loader/ebpf/collection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "elf/core.hpp"

#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::ebpf {

namespace {

// Large enough for the verifier's log of programs this size at log level 1.
constexpr size_t kVerifierLogSize = 1U << 20;

// Whether anything in the spec refers to its BTF: then it is loaded.
bool uses_btf(const CollectionSpec& spec)
{
    if (!spec.btf)
        return false;
    for (const auto& m : spec.maps)
        if (m.btf_key_type_id != 0 || m.btf_value_type_id != 0)
            return true;
    for (const auto& p : spec.programs)
        if (!p.func_info.empty() || !p.line_info.empty())
            return true;
    return false;
}

// A legacy definition of a map type the kernel creates only with BTF: the one INT of minimal_btf() describes a
// 4-byte key and value, in a BTF of its own.
void set_legacy_map_btf(const MapSpec& m, Fd& legacy_btf, sys::MapCreateArgs& args)
{
    if (m.key_size != 4 || m.value_size != 4)
        throw Error("map '" + m.name + "': " + map_type_name(m.type) +
                    " needs BTF for its key and value; declare it in '.maps' with __type(key, ...) and "
                    "__type(value, ...)");
    if (!legacy_btf) {
        const auto blob = minimal_btf();
        legacy_btf = sys::btf_load(blob);
    }
    args.btf_fd = legacy_btf.get();
    args.btf_key_type_id = kBtfIntTypeId;
    args.btf_value_type_id = kBtfIntTypeId;
}

Fd create_map(const MapSpec& m, const Collection& c, Fd& legacy_btf)
{
    sys::MapCreateArgs args;
    args.type = m.type;
    args.key_size = m.key_size;
    args.value_size = m.value_size;
    args.max_entries = m.max_entries;
    args.flags = m.flags;
    args.name = m.name;
    const bool typed = c.btf && (m.btf_key_type_id != 0 || m.btf_value_type_id != 0);
    if (typed) {
        args.btf_fd = c.btf.get();
        args.btf_key_type_id = m.btf_key_type_id;
        args.btf_value_type_id = m.btf_value_type_id;
    } else if (m.needs_btf) {
        set_legacy_map_btf(m, legacy_btf, args);
    }
    try {
        return sys::map_create(args);
    } catch (const Error& e) {
        // Some map types take no BTF value type (a sockhash on older kernels): libbpf retries without BTF, where
        // the map type does not need it, and so do we.
        if (!typed || m.needs_btf || e.code() == EPERM || e.code() == ENOMEM)
            throw;
    }
    args.btf_fd = -1;
    args.btf_key_type_id = 0;
    args.btf_value_type_id = 0;
    return sys::map_create(args);
}

Fd load_program(const CollectionSpec& spec, const ProgramSpec& p, const std::vector<bpf_insn>& insns,
                const Collection& c, uint32_t attach_btf_id)
{
    sys::ProgLoadArgs args;
    args.type = p.type;
    args.expected_attach_type = p.expected_attach_type;
    args.insns = insns;
    args.license = spec.license;
    args.name = p.name;
    args.attach_btf_id = attach_btf_id;
    if (c.btf) {
        args.prog_btf_fd = c.btf.get();
        args.func_info = p.func_info;
        args.line_info = p.line_info;
    }
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

Collection create_maps(const CollectionSpec& spec, std::vector<Map> existing)
{
    Collection c;
    if (uses_btf(spec))
        c.btf = load_btf(*spec.btf);
    Fd legacy_btf;
    for (const auto& m : spec.maps) {
        const auto given =
            std::find_if(existing.begin(), existing.end(), [&](const Map& e) { return e.name == m.name; });
        if (given != existing.end()) {
            const auto info = sys::map_info(given->fd.get());
            if (info.type != m.type || info.key_size != m.key_size || info.value_size != m.value_size)
                throw Error("map '" + m.name + "': the existing map is a " + map_type_name(info.type) + " of " +
                            std::to_string(info.key_size) + "+" + std::to_string(info.value_size) +
                            " bytes, the object declares a " + map_type_name(m.type) + " of " +
                            std::to_string(m.key_size) + "+" + std::to_string(m.value_size));
            c.maps.add({m.name, m.type, std::move(given->fd)});
            continue;
        }
        Fd fd = create_map(m, c, legacy_btf);
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

void load_programs(const CollectionSpec& spec, Collection& collection, const LoadOptions& options)
{
    std::unordered_map<std::string, int> map_fds;
    for (const auto& m : collection.maps)
        map_fds.emplace(m.name, m.fd.get());
    // The kernel's BTF is large (5 MB): read once, and only for a spec that needs it.
    std::optional<elf::Btf> kernel;
    const auto kernel_btf = [&]() -> const elf::Btf& {
        if (options.kernel)
            return *options.kernel;
        if (!kernel)
            kernel = read_kernel_btf(options.kernel_btf);
        return *kernel;
    };
    for (const auto& name : options.programs)
        (void)spec.programs.at(name); // an unknown name is an error, not a silent no-op
    const auto load = [&](const ProgramSpec& p) {
        auto insns = relocate(p, map_fds);
        if (!p.core_relos.empty()) {
            if (!spec.btf)
                throw Error("program '" + p.name + "': CO-RE relocations without the object's BTF");
            elf::apply_core_relocations(insns, p.core_relos, 0, *spec.btf, kernel_btf(), p.name);
        }
        uint32_t target = 0;
        if (p.type == BPF_PROG_TYPE_TRACING)
            target = attach_btf_id(kernel_btf(), p.expected_attach_type, p.attach_to);
        return load_program(spec, p, insns, collection, target);
    };
    for (const auto& p : spec.programs) {
        if (!options.programs.empty() &&
            std::find(options.programs.begin(), options.programs.end(), p.name) == options.programs.end())
            continue;
        const bool optional =
            std::find(options.optional.begin(), options.optional.end(), p.name) != options.optional.end();
        Fd fd;
        try {
            fd = load(p);
        } catch (const Error& e) {
            if (!optional)
                throw;
            collection.not_loaded.push_back({p.name, e});
            continue;
        }
        collection.programs.add({p.name, p.section, p.type, p.attach_type, std::move(fd)});
    }
}

Collection load_collection(const CollectionSpec& spec, const LoadOptions& options)
{
    Collection c = create_maps(spec);
    load_programs(spec, c, options);
    return c;
}

} // namespace sockredir::ebpf
