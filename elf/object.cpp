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

// Map definitions: every object symbol in "maps", at its offset, of exactly the legacy size. `map_at` maps each
// definition's offset to its index (a std::map: the lookups stay O(log n) however many maps a hostile file holds).
std::vector<MapSpec> read_maps(const ElfFile& file, std::map<uint64_t, size_t>& map_at, uint32_t& maps_index)
{
    std::vector<MapSpec> maps;
    const Section* s = file.find_section(kMapsSection);
    maps_index = 0;
    if (s == nullptr)
        return maps;
    maps_index = s->index;
    if (s->type != SHT_PROGBITS)
        throw Error("section 'maps': is not PROGBITS (type " + std::to_string(s->type) + ")");
    for (const auto& sym : file.symbols) {
        if (sym.shndx != s->index || sym.type == STT_SECTION)
            continue;
        const auto what = "section 'maps': map " + quoted(sym.name);
        if (sym.name.empty())
            throw Error("section 'maps': map symbol #" + std::to_string(sym.index) + " has no name");
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
    return maps;
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
                                                    const std::map<uint64_t, size_t>& map_at, uint32_t maps_index)
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
            if (maps_index == 0 || sym.shndx != maps_index) {
                const std::string target =
                    sym.shndx < file.sections.size() ? file.sections[sym.shndx].name : std::to_string(sym.shndx);
                throw Error(what + ": refers to symbol " + quoted(sym.name) + " in section " + quoted(target) +
                            "; only maps are supported (no global data, no calls)");
            }
            // A relocation against the section symbol addresses a map by offset.
            const uint64_t offset =
                sym.type == STT_SECTION ? uint64_t{static_cast<uint32_t>(insns[insn].imm)} : sym.value;
            const auto map = map_at.find(offset);
            if (map == map_at.end())
                throw Error(what + ": no map starts at offset " + std::to_string(offset) + " of section 'maps'");
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
    std::map<uint64_t, size_t> map_at;
    uint32_t maps_index = 0;
    object.maps = read_maps(file, map_at, maps_index);
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
        p.relocations = read_program_relocations(file, s, p.insns, relocations[s.index], map_at, maps_index);
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
