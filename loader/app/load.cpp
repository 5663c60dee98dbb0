// Loading: maps first, then relocation, then BPF_PROG_LOAD with a verifier-log retry on failure.
#include "loader/app/load.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
namespace sys = ebpf::sys;
using ebpf::kBtfIntTypeId;
using ebpf::minimal_btf;

namespace {

// Large enough for the verifier's log of programs this size at log level 1.
constexpr size_t kVerifierLogSize = 1U << 20;

void print_verifier_log(const std::string& program, const std::vector<char>& log)
{
    std::fprintf(stderr, "--- verifier log of program '%s' ---\n%s", program.c_str(), log.data());
    if (log[0] != '\0' && log[std::strlen(log.data()) - 1] != '\n')
        std::fputc('\n', stderr);
    std::fprintf(stderr, "--- end of verifier log of program '%s' ---\n", program.c_str());
}

} // namespace

Collection create_maps(const LoadPlan& plan)
{
    Collection c;
    for (const auto& m : plan.maps) {
        sys::MapCreateArgs args;
        args.type = m.spec.type;
        args.key_size = m.spec.key_size;
        args.value_size = m.spec.value_size;
        args.max_entries = m.spec.max_entries;
        args.flags = m.spec.flags;
        args.name = m.spec.name;
        if (m.needs_btf) {
            if (!c.btf) {
                const auto blob = minimal_btf();
                c.btf = sys::btf_load(blob);
            }
            args.btf_fd = c.btf.get();
            args.btf_key_type_id = kBtfIntTypeId;
            args.btf_value_type_id = kBtfIntTypeId;
        }
        c.maps.push_back({m.spec.name, sys::map_create(args)});
    }
    return c;
}

std::vector<bpf_insn> relocate(const elf::ProgramSpec& program, const std::vector<int>& map_fds)
{
    std::vector<bpf_insn> insns = program.insns;
    for (const auto& r : program.relocations) {
        if (r.map >= map_fds.size() || r.insn + 1 >= insns.size())
            throw Error("program '" + program.name + "': relocation out of range");
        bpf_insn& insn = insns[r.insn];
        // The kernel resolves src_reg = BPF_PSEUDO_MAP_FD + imm = fd to the map.
        insn.src_reg = BPF_PSEUDO_MAP_FD;
        insn.imm = map_fds[r.map];
        insns[r.insn + 1].imm = 0;
    }
    return insns;
}

void load_programs(const LoadPlan& plan, Collection& collection)
{
    std::vector<int> map_fds;
    for (const auto& m : collection.maps)
        map_fds.push_back(m.fd.get());
    for (const auto& pp : plan.programs) {
        const auto& spec = plan.object.programs[pp.program];
        const auto insns = relocate(spec, map_fds);
        sys::ProgLoadArgs args;
        args.type = pp.prog_type;
        args.expected_attach_type = pp.expected_attach_type;
        args.insns = insns;
        args.license = plan.object.license;
        args.name = spec.name;
        try {
            collection.programs.push_back({spec.name, spec.section, sys::prog_load(args)});
        } catch (const Error& first) {
            // Retry once with the verifier log on, and show it under the program's name.
            std::vector<char> log(kVerifierLogSize);
            args.log = log;
            args.log_level = 1;
            try {
                collection.programs.push_back({spec.name, spec.section, sys::prog_load(args)});
                continue; // a transient failure; the retry loaded it
            } catch (const Error& second) {
                if (log[0] != '\0')
                    print_verifier_log(spec.name, log);
                if (log[0] != '\0')
                    throw Error("the verifier rejected program '" + spec.name + "' (section '" + spec.section +
                                    "'), log above",
                                second.code());
                throw Error("loading program '" + spec.name + "' (section '" + spec.section + "')", second.code());
            }
        }
    }
}

Collection load(const LoadPlan& plan)
{
    Collection c = create_maps(plan);
    load_programs(plan, c);
    return c;
}

} // namespace sockredir::app
