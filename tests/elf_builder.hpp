// Test-only builders of ELF64 little-endian BPF relocatable objects, and checked byte patching of real ones.
#pragma once

#include <elf.h>
#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "elf/object.hpp"
#include "loader/ebpf/insn.hpp"

namespace sockredir::test {

using Bytes = std::vector<std::byte>;

// --- raw bytes -------------------------------------------------------------------------------------------------

// Copies a T out of `bytes` at `offset`; throws std::out_of_range (a broken test, not a parser error) when it
// does not fit.
template <typename T> T load(std::span<const std::byte> bytes, uint64_t offset)
{
    static_assert(std::is_trivially_copyable_v<T>);
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
        throw std::out_of_range("test load past the end of the bytes");
    T out;
    std::memcpy(&out, bytes.data() + offset, sizeof(T));
    return out;
}

template <typename T> void store(Bytes& bytes, uint64_t offset, const T& value)
{
    static_assert(std::is_trivially_copyable_v<T>);
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
        throw std::out_of_range("test store past the end of the bytes");
    std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

template <typename T> void append(Bytes& bytes, const T& value)
{
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &value, sizeof(T));
}

Bytes to_bytes(std::string_view s);
Bytes insns_bytes(const std::vector<bpf_insn>& insns);

// The first `length` bytes, in a buffer of exactly that size (so a sanitizer sees any over-read).
Bytes truncated(std::span<const std::byte> bytes, size_t length);

// --- patching an existing object -------------------------------------------------------------------------------
// These read the headers on their own (not through elf::read), so a test can break what the parser checks.

Elf64_Ehdr get_ehdr(std::span<const std::byte> bytes);
void set_ehdr(Bytes& bytes, const Elf64_Ehdr& ehdr);
void patch_ehdr(Bytes& bytes, const std::function<void(Elf64_Ehdr&)>& change);

uint64_t shdr_offset(std::span<const std::byte> bytes, uint32_t index);
Elf64_Shdr get_shdr(std::span<const std::byte> bytes, uint32_t index);
void set_shdr(Bytes& bytes, uint32_t index, const Elf64_Shdr& shdr);
void patch_shdr(Bytes& bytes, uint32_t index, const std::function<void(Elf64_Shdr&)>& change);

// Index of the section called `name`; throws std::runtime_error when there is none.
uint32_t section_index(std::span<const std::byte> bytes, std::string_view name);

// Patches the `entry`-th Elf64_Rel of the REL section `rel_index`.
Elf64_Rel get_rel(std::span<const std::byte> bytes, uint32_t rel_index, uint32_t entry);
void patch_rel(Bytes& bytes, uint32_t rel_index, uint32_t entry, const std::function<void(Elf64_Rel&)>& change);

// Instructions come from the loader's own builder: insn::mov_imm(0, 1), insn::exit_insn(), ...
namespace insn = ebpf::insn;

// --- building an object from scratch ---------------------------------------------------------------------------

struct SymbolSpec {
    std::string name;
    uint16_t shndx = SHN_UNDEF;
    uint64_t value = 0;
    uint64_t size = 0;
    uint8_t type = STT_NOTYPE;
    uint8_t bind = STB_GLOBAL;
};

struct RelSpec {
    uint64_t offset = 0;
    uint32_t type = R_BPF_64_64;
    uint32_t symbol = 0;
};

// Sections are laid out in the order added, after the null section; then one ".rel<name>" per section with
// relocations, then .symtab, .strtab and .shstrtab, then the section header table.
class ElfBuilder {
public:
    uint16_t machine = EM_BPF;
    uint16_t elf_type = ET_REL;

    // Returns the section index.
    uint32_t add_section(std::string name, uint32_t type, uint64_t flags, Bytes data, uint64_t addralign = 8);
    // Returns the symbol index (0 is the null symbol).
    uint32_t add_symbol(SymbolSpec symbol);
    void add_rel(uint32_t target_section, RelSpec rel);

    // Adds an executable section holding `insns` and a global function symbol `function` at its start.
    // Returns the section index.
    uint32_t add_program(std::string section, const std::string& function, const std::vector<bpf_insn>& insns);

    // Index the .symtab / .strtab / .shstrtab / .rel<target> sections will have in build()'s output.
    uint32_t symtab_index() const;
    uint32_t strtab_index() const;
    uint32_t shstrtab_index() const;
    uint32_t rel_index(uint32_t target_section) const;

    Bytes build() const;

private:
    struct SectionSpec {
        std::string name;
        uint32_t type;
        uint64_t flags;
        Bytes data;
        uint64_t addralign;
    };
    std::vector<SectionSpec> sections_; // sections_[i] has index i + 1
    std::vector<SymbolSpec> symbols_;   // symbols_[i] has index i + 1
    std::map<uint32_t, std::vector<RelSpec>> rels_;
};

// --- a sockredir-shaped object, described by parts ------------------------------------------------------------

struct MapRecipe {
    std::string name;
    elf::LegacyMapDef def{};
    // The size the symbol claims; sizeof(elf::LegacyMapDef) unless a test breaks it.
    uint64_t symbol_size = sizeof(elf::LegacyMapDef);
};

struct ProgramRecipe {
    std::string section;
    std::string function;
    // Each map named here gets one ld_imm64 (with an R_BPF_64_64 against the map's symbol) before `return 1`.
    std::vector<std::string> map_refs;
};

struct ObjectRecipe {
    std::optional<std::string> license = std::string("GPL");
    std::vector<MapRecipe> maps = default_maps();
    std::vector<ProgramRecipe> programs = default_programs();

    // The four maps of bpf/sockredir_shared.h, shaped as sockredir.bpf.c declares them.
    static std::vector<MapRecipe> default_maps();
    // One sockops and one sk_msg program, each referencing maps.
    static std::vector<ProgramRecipe> default_programs();

    // The object as a builder, for tests that add more; `symbol_of` maps each map and function name to its symbol
    // index, `section_of` each section name to its index.
    struct Parts {
        ElfBuilder builder;
        std::map<std::string, uint32_t> symbol_of;
        std::map<std::string, uint32_t> section_of;
    };
    Parts parts() const;
    Bytes build() const { return parts().builder.build(); }
};

// The clang-built object: from $SOCKREDIR_BPF_OBJECT when set, else nullopt.
std::optional<Bytes> bpf_object_from_env();
// The clang-built object: $SOCKREDIR_BPF_OBJECT when set, else the copy embedded in the loader.
Bytes real_object();

} // namespace sockredir::test
