// From the ELF model to the BPF object model: finds programs, maps, license and checks every map relocation.
#include "elf/object.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "elf/reader.hpp"
#include "loader/base/error.hpp"

namespace sockredir::elf {

namespace {

constexpr const char* kMapsSection = "maps";
constexpr const char* kBtfMapsSection = ".maps";
constexpr const char* kLicenseSection = "license";
// BPF_LD | BPF_IMM | BPF_DW: the two-slot instruction that loads a 64-bit immediate.
constexpr uint8_t kLdImm64 = BPF_LD | BPF_IMM | BPF_DW;

std::string quoted(const std::string& s)
{
    return "'" + s + "'";
}

bool is_program_section(const Section& s)
{
    return s.type == SHT_PROGBITS && (s.flags & SHF_EXECINSTR) != 0 && s.size > 0;
}

std::string read_license(const ElfFile& file)
{
    const Section* s = file.find_section(kLicenseSection);
    if (s == nullptr)
        throw Error("section 'license': missing (the kernel needs a license string)");
    if (s->type != SHT_PROGBITS || s->data.empty())
        throw Error("section 'license': empty");
    const auto* begin = reinterpret_cast<const char*>(s->data.data());
    const void* nul = std::memchr(begin, '\0', s->data.size());
    if (nul == nullptr)
        throw Error("section 'license': string is not NUL-terminated");
    std::string license(begin, static_cast<const char*>(nul));
    if (license.empty())
        throw Error("section 'license': empty string");
    return license;
}

// For each section that holds map definitions ("maps", ".maps"): the offset of each definition -> its index in
// ObjectSpec::maps (std::map: the lookups stay O(log n) however many maps a hostile file holds).
using MapSections = std::map<uint32_t, std::map<uint64_t, size_t>>;

// The map symbols of section `s`: named, not the section symbol, each at its own offset.
std::vector<const Symbol*> map_symbols(const ElfFile& file, const Section& s)
{
    std::vector<const Symbol*> out;
    for (const auto& sym : file.symbols) {
        if (sym.shndx != s.index || sym.type == STT_SECTION)
            continue;
        if (sym.name.empty())
            throw Error("section " + quoted(s.name) + ": map symbol #" + std::to_string(sym.index) + " has no name");
        out.push_back(&sym);
    }
    return out;
}

// Legacy map definitions: every object symbol in "maps", at its offset, of exactly the legacy size.
void read_legacy_maps(const ElfFile& file, std::vector<MapSpec>& maps, MapSections& sections)
{
    const Section* s = file.find_section(kMapsSection);
    if (s == nullptr)
        return;
    if (s->type != SHT_PROGBITS)
        throw Error("section 'maps': is not PROGBITS (type " + std::to_string(s->type) + ")");
    auto& map_at = sections[s->index];
    for (const Symbol* symp : map_symbols(file, *s)) {
        const Symbol& sym = *symp;
        const auto what = "section 'maps': map " + quoted(sym.name);
        if (sym.size != sizeof(LegacyMapDef))
            throw Error(what + ": definition is " + std::to_string(sym.size) + " bytes, expected " +
                        std::to_string(sizeof(LegacyMapDef)));
        if (sym.value > s->size || s->size - sym.value < sizeof(LegacyMapDef))
            throw Error(what + ": definition at offset " + std::to_string(sym.value) + " lies outside the section (" +
                        std::to_string(s->size) + " bytes)");
        if (sym.value % alignof(LegacyMapDef) != 0)
            throw Error(what + ": definition at offset " + std::to_string(sym.value) + " is misaligned");
        if (map_at.count(sym.value) != 0)
            throw Error(what + ": shares its offset with another map");
        LegacyMapDef def;
        std::memcpy(&def, s->data.data() + sym.value, sizeof def);
        MapSpec m;
        m.name = sym.name;
        m.type = def.type;
        m.key_size = def.key_size;
        m.value_size = def.value_size;
        m.max_entries = def.max_entries;
        m.flags = def.map_flags;
        map_at.emplace(sym.value, maps.size());
        maps.push_back(std::move(m));
    }
}

// BTF-defined maps (libbpf's): the DATASEC ".maps" of the object's BTF describes each map, the ELF symbol of the
// same name gives its offset, which the programs' relocations use.
void read_btf_maps(const ElfFile& file, const std::optional<Btf>& btf, std::vector<MapSpec>& maps,
                   MapSections& sections)
{
    const Section* s = file.find_section(kBtfMapsSection);
    if (s == nullptr)
        return;
    if (!btf)
        throw Error("section '.maps': BTF-defined maps need the object's .BTF (compile with clang -g)");
    auto defs = parse_btf_maps(*btf, kBtfMapsSection);
    auto& map_at = sections[s->index];
    const auto symbols = map_symbols(file, *s);
    for (const Symbol* sym : symbols) {
        const auto what = "section '.maps': map " + quoted(sym->name);
        auto def = std::find_if(defs.begin(), defs.end(), [&](const BtfMapDef& d) { return d.name == sym->name; });
        if (def == defs.end())
            throw Error(what + ": no VAR of that name in the BTF DATASEC '.maps'");
        if (!def->inner.empty() || def->has_values)
            throw Error(what + ": __array(values, ...) (map-in-map, program arrays) is not supported");
        if (map_at.count(sym->value) != 0)
            throw Error(what + ": shares its offset with another map");
        MapSpec m;
        m.name = def->name;
        m.type = def->type;
        m.key_size = def->key_size;
        m.value_size = def->value_size;
        m.max_entries = def->max_entries;
        m.flags = def->map_flags;
        m.btf_key_type_id = def->key_type_id;
        m.btf_value_type_id = def->value_type_id;
        map_at.emplace(sym->value, maps.size());
        maps.push_back(std::move(m));
        defs.erase(def);
    }
    if (!defs.empty())
        throw Error("section '.maps': map " + quoted(defs.front().name) + " of the BTF DATASEC has no ELF symbol");
}

// `functions` holds the STT_FUNC symbols of section `s`, in symbol table order.
std::string program_name(const Section& s, const std::vector<const Symbol*>& functions)
{
    const Symbol* found = nullptr;
    for (const Symbol* sym : functions) {
        if (found != nullptr)
            throw Error("section " + quoted(s.name) + ": holds more than one function (" + found->name + ", " +
                        sym->name + "); bpf-to-bpf calls are not supported");
        found = sym;
    }
    if (found == nullptr)
        throw Error("section " + quoted(s.name) + ": no function symbol names the program");
    if (found->value != 0)
        throw Error("section " + quoted(s.name) + ": program " + quoted(found->name) + " does not start the section");
    if (found->name.empty())
        throw Error("section " + quoted(s.name) + ": program symbol has no name");
    return found->name;
}

std::vector<bpf_insn> read_insns(const Section& s)
{
    if (s.data.size() % sizeof(bpf_insn) != 0)
        throw Error("section " + quoted(s.name) + ": size " + std::to_string(s.data.size()) +
                    " is not a multiple of the instruction size (8)");
    std::vector<bpf_insn> insns(s.data.size() / sizeof(bpf_insn));
    if (insns.empty())
        throw Error("section " + quoted(s.name) + ": program has no instructions");
    std::memcpy(insns.data(), s.data.data(), s.data.size());
    return insns;
}

// `relocations` holds the relocation sections whose target is `prog`.
std::vector<MapRelocation> read_program_relocations(const ElfFile& file, const Section& prog,
                                                    const std::vector<bpf_insn>& insns,
                                                    const std::vector<const RelocationSection*>& relocations,
                                                    const MapSections& map_sections)
{
    std::vector<MapRelocation> out;
    for (const RelocationSection* rsp : relocations) {
        const RelocationSection& rs = *rsp;
        const auto& rel_section = file.sections[rs.section];
        if (rel_section.type == SHT_RELA)
            throw Error("section " + quoted(rel_section.name) + ": RELA relocations for a program are not supported");
        for (size_t i = 0; i < rs.entries.size(); ++i) {
            const Relocation& r = rs.entries[i];
            const auto what = "section " + quoted(rel_section.name) + ": relocation #" + std::to_string(i);
            if (r.type != R_BPF_64_64)
                throw Error(what + ": type " + std::to_string(r.type) + " (" + relocation_name(r.type) +
                            (r.type == R_BPF_64_32 ? ", a bpf-to-bpf call" : "") + ") is not supported");
            if (r.offset % sizeof(bpf_insn) != 0)
                throw Error(what + ": offset " + std::to_string(r.offset) + " is not on an instruction boundary");
            const size_t insn = r.offset / sizeof(bpf_insn);
            if (insn + 1 >= insns.size())
                throw Error(what + ": offset " + std::to_string(r.offset) + " is outside section " + quoted(prog.name));
            if (insns[insn].code != kLdImm64)
                throw Error(what + ": instruction " + std::to_string(insn) + " is not a 64-bit immediate load");
            const Symbol& sym = file.symbols[r.symbol];
            if (sym.shndx == SHN_UNDEF)
                throw Error(what + ": refers to undefined symbol " + quoted(sym.name) +
                            " (extern symbols and kfuncs are not supported)");
            const auto map_section = map_sections.find(sym.shndx);
            if (map_section == map_sections.end()) {
                const std::string target =
                    sym.shndx < file.sections.size() ? file.sections[sym.shndx].name : std::to_string(sym.shndx);
                throw Error(what + ": refers to symbol " + quoted(sym.name) + " in section " + quoted(target) +
                            "; only maps are supported (no global data, no calls)");
            }
            // A relocation against the section symbol addresses a map by offset.
            const uint64_t offset =
                sym.type == STT_SECTION ? uint64_t{static_cast<uint32_t>(insns[insn].imm)} : sym.value;
            const auto map = map_section->second.find(offset);
            if (map == map_section->second.end())
                throw Error(what + ": no map starts at offset " + std::to_string(offset) + " of section " +
                            quoted(file.sections[sym.shndx].name));
            out.push_back({insn, map->second});
        }
    }
    return out;
}

// Program sections are copied into ProgramSpec::insns; overlapping ones would let a small file claim the same
// bytes thousands of times (65535 headers over one region). Real objects never overlap them.
void check_programs_do_not_overlap(const std::vector<const Section*>& programs)
{
    std::vector<const Section*> sorted = programs;
    std::sort(sorted.begin(), sorted.end(), [](const Section* a, const Section* b) {
        return a->offset != b->offset ? a->offset < b->offset : a->index < b->index;
    });
    for (size_t i = 1; i < sorted.size(); ++i) {
        const Section& prev = *sorted[i - 1];
        const Section& s = *sorted[i];
        // Both lie inside the file (elf::read checked), so offset + size does not overflow.
        if (s.offset < prev.offset + prev.size)
            throw Error("section " + quoted(s.name) + ": contents (offset " + std::to_string(s.offset) + ", " +
                        std::to_string(s.size) + " bytes) overlap program section " + quoted(prev.name));
    }
}

} // namespace

const char* relocation_name(uint32_t type)
{
    switch (type) {
    case R_BPF_NONE:
        return "R_BPF_NONE";
    case R_BPF_64_64:
        return "R_BPF_64_64";
    case 2:
        return "R_BPF_64_ABS64";
    case 3:
        return "R_BPF_64_ABS32";
    case 4:
        return "R_BPF_64_NODYLD32";
    case R_BPF_64_32:
        return "R_BPF_64_32";
    default:
        return "unknown";
    }
}

const MapSpec* ObjectSpec::find_map(std::string_view name) const
{
    for (const auto& m : maps)
        if (m.name == name)
            return &m;
    return nullptr;
}

const ProgramSpec* ObjectSpec::find_program(std::string_view name) const
{
    for (const auto& p : programs)
        if (p.name == name)
            return &p;
    return nullptr;
}

ObjectSpec parse_object(std::span<const std::byte> bytes)
{
    const ElfFile file = read(bytes);
    if (file.machine != EM_BPF)
        throw Error("ELF header: machine " + std::to_string(file.machine) + " is not BPF (" + std::to_string(EM_BPF) +
                    ")");
    ObjectSpec object;
    object.license = read_license(file);
    std::optional<BtfExt> ext;
    if (const Section* s = file.find_section(".BTF")) {
        object.btf = parse_btf(s->data, ".BTF");
        fixup_datasecs(*object.btf, file);
        if (const Section* e = file.find_section(".BTF.ext"))
            ext = parse_btf_ext(e->data, *object.btf, ".BTF.ext");
    }
    MapSections map_sections;
    read_legacy_maps(file, object.maps, map_sections);
    read_btf_maps(file, object.btf, object.maps, map_sections);
    // Function symbols and relocation sections grouped by section, in one pass each: looking them up per program
    // section would cost sections x symbols, which a hostile file makes large.
    std::vector<std::vector<const Symbol*>> functions(file.sections.size());
    for (const auto& sym : file.symbols)
        if (sym.type == STT_FUNC && sym.shndx < file.sections.size())
            functions[sym.shndx].push_back(&sym);
    std::vector<std::vector<const RelocationSection*>> relocations(file.sections.size());
    for (const auto& rs : file.relocations)
        relocations[rs.target].push_back(&rs);
    std::vector<const Section*> program_sections;
    for (const auto& s : file.sections)
        if (is_program_section(s)) // not an empty .text, as clang emits it
            program_sections.push_back(&s);
    check_programs_do_not_overlap(program_sections);
    for (const Section* sp : program_sections) {
        const Section& s = *sp;
        ProgramSpec p;
        p.section = s.name;
        p.insns = read_insns(s);
        p.name = program_name(s, functions[s.index]);
        p.relocations = read_program_relocations(file, s, p.insns, relocations[s.index], map_sections);
        if (ext) {
            // A program is its whole section (program_name checked that), so its records are the section's.
            p.func_info = program_func_info(*ext, s.name, 0, s.size);
            p.line_info = program_line_info(*ext, s.name, 0, s.size);
            const auto relos = ext->core_relos_of(s.name);
            p.core_relos.assign(relos.begin(), relos.end());
        }
        object.programs.push_back(std::move(p));
    }
    // An executable section with a function symbol but no bytes is a program with no instructions.
    for (const auto& sym : file.symbols) {
        if (sym.type != STT_FUNC || sym.shndx == SHN_UNDEF || sym.shndx >= file.sections.size())
            continue;
        const Section& s = file.sections[sym.shndx];
        if (s.size == 0)
            throw Error("section " + quoted(s.name) + ": program " + quoted(sym.name) + " has no instructions");
    }
    if (object.programs.empty())
        throw Error("ELF file: no program sections");
    return object;
}

} // namespace sockredir::elf
