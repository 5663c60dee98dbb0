// ELF64 reader: copies every header out of the input with one bounds-checked accessor, then checks what it copied.
#include "elf/reader.hpp"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "loader/base/error.hpp"

namespace sockredir::elf {

namespace {

std::string hex(uint64_t v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// The one way bytes of the file become a struct: bounds-checked, then memcpy'd.
template <typename T> T read_at(std::span<const std::byte> bytes, uint64_t offset, const std::string& what)
{
    static_assert(std::is_trivially_copyable_v<T>);
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
        throw Error(what + ": " + std::to_string(sizeof(T)) + " bytes at offset " + hex(offset) +
                    " lie past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
    T out;
    std::memcpy(&out, bytes.data() + offset, sizeof(T));
    return out;
}

// A NUL-terminated string at `offset` inside a string table section.
std::string string_at(const Section& strtab, uint64_t offset, const std::string& what)
{
    if (offset >= strtab.data.size())
        throw Error(what + ": name offset " + hex(offset) + " is outside string table '" + strtab.name + "' (" +
                    std::to_string(strtab.data.size()) + " bytes)");
    const auto* begin = reinterpret_cast<const char*>(strtab.data.data()) + offset;
    const auto* end = static_cast<const char*>(std::memchr(begin, '\0', strtab.data.size() - offset));
    if (end == nullptr)
        throw Error(what + ": name at offset " + hex(offset) + " in string table '" + strtab.name +
                    "' is not NUL-terminated");
    return std::string(begin, end);
}

std::string section_label(const Section& s)
{
    return s.name.empty() ? "section #" + std::to_string(s.index) : "section '" + s.name + "'";
}

Elf64_Ehdr read_header(std::span<const std::byte> bytes)
{
    if (bytes.size() < EI_NIDENT)
        throw Error("ELF header: file is truncated (" + std::to_string(bytes.size()) + " bytes)");
    auto ident = read_at<std::array<unsigned char, EI_NIDENT>>(bytes, 0, "ELF header");
    if (std::memcmp(ident.data(), ELFMAG, SELFMAG) != 0)
        throw Error("ELF header: not an ELF file (bad magic)");
    if (ident[EI_CLASS] != ELFCLASS64)
        throw Error("ELF header: not ELF64 (class " + std::to_string(ident[EI_CLASS]) + ")");
    if (ident[EI_DATA] != ELFDATA2LSB)
        throw Error("ELF header: not little-endian (data encoding " + std::to_string(ident[EI_DATA]) + ")");
    auto ehdr = read_at<Elf64_Ehdr>(bytes, 0, "ELF header");
    if (ehdr.e_type != ET_REL)
        throw Error("ELF header: not a relocatable object (e_type " + std::to_string(ehdr.e_type) + ")");
    if (ehdr.e_shentsize != sizeof(Elf64_Shdr))
        throw Error("ELF header: section header size " + std::to_string(ehdr.e_shentsize) + " is not " +
                    std::to_string(sizeof(Elf64_Shdr)));
    if (ehdr.e_shnum == 0)
        throw Error("ELF header: no section headers");
    if (ehdr.e_shstrndx == SHN_UNDEF || ehdr.e_shstrndx >= ehdr.e_shnum)
        throw Error("ELF header: section name table index " + std::to_string(ehdr.e_shstrndx) + " is out of range (" +
                    std::to_string(ehdr.e_shnum) + " sections)");
    return ehdr;
}

// The tables read() turns into entries (symbols, relocations) never share a byte in a compiled object. Refusing
// overlap keeps read()'s work linear in the file size: without it, thousands of SHT_REL headers over one region made
// the reader expand that region thousands of times (a 1.1 MB file took minutes and gigabytes). Other sections may
// overlap here; parse_object checks the program sections it copies.
void check_tables_do_not_overlap(const std::vector<Section>& sections)
{
    std::vector<const Section*> tables;
    for (const auto& s : sections)
        if (!s.data.empty() && (s.type == SHT_SYMTAB || s.type == SHT_REL || s.type == SHT_RELA))
            tables.push_back(&s);
    std::sort(tables.begin(), tables.end(), [](const Section* a, const Section* b) {
        return a->offset != b->offset ? a->offset < b->offset : a->index < b->index;
    });
    for (size_t i = 1; i < tables.size(); ++i) {
        const Section& prev = *tables[i - 1];
        const Section& s = *tables[i];
        // Both lie inside the file (checked in read_sections), so offset + size does not overflow.
        if (s.offset < prev.offset + prev.size)
            throw Error(section_label(s) + ": contents (" + hex(s.offset) + " + " + hex(s.size) + ") overlap " +
                        section_label(prev) + " (" + hex(prev.offset) + " + " + hex(prev.size) + ")");
    }
}

std::vector<Section> read_sections(std::span<const std::byte> bytes, const Elf64_Ehdr& ehdr)
{
    std::vector<Section> sections(ehdr.e_shnum);
    std::vector<uint32_t> name_offsets(ehdr.e_shnum);
    for (uint32_t i = 0; i < ehdr.e_shnum; ++i) {
        auto label = "section header #" + std::to_string(i);
        auto shdr = read_at<Elf64_Shdr>(bytes, ehdr.e_shoff + uint64_t{i} * sizeof(Elf64_Shdr), label);
        Section& s = sections[i];
        s.index = i;
        s.type = shdr.sh_type;
        s.flags = shdr.sh_flags;
        s.offset = shdr.sh_offset;
        s.size = shdr.sh_size;
        s.link = shdr.sh_link;
        s.info = shdr.sh_info;
        s.addralign = shdr.sh_addralign;
        s.entsize = shdr.sh_entsize;
        name_offsets[i] = shdr.sh_name;
        if (s.type != SHT_NOBITS && s.type != SHT_NULL) {
            if (s.offset > bytes.size() || bytes.size() - s.offset < s.size)
                throw Error(label + ": contents (" + hex(s.offset) + " + " + hex(s.size) +
                            ") lie past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
            s.data = bytes.subspan(s.offset, s.size);
        }
        if (s.link >= ehdr.e_shnum)
            throw Error(label + ": sh_link " + std::to_string(s.link) + " is out of range");
    }
    const Section& shstrtab = sections[ehdr.e_shstrndx];
    if (shstrtab.type != SHT_STRTAB)
        throw Error("section header #" + std::to_string(ehdr.e_shstrndx) + ": section name table is not SHT_STRTAB");
    for (uint32_t i = 1; i < ehdr.e_shnum; ++i)
        sections[i].name = string_at(shstrtab, name_offsets[i], "section header #" + std::to_string(i));
    // Labels of later errors use the names, so the raw sh_name is checked first.
    check_tables_do_not_overlap(sections);
    return sections;
}

std::vector<Symbol> read_symbols(const std::vector<Section>& sections, uint32_t& symtab_index)
{
    const Section* symtab = nullptr;
    for (const auto& s : sections) {
        if (s.type != SHT_SYMTAB)
            continue;
        if (symtab != nullptr)
            throw Error(section_label(s) + ": second symbol table (only one is supported)");
        symtab = &s;
    }
    std::vector<Symbol> symbols;
    if (symtab == nullptr) {
        symtab_index = 0;
        return symbols;
    }
    symtab_index = symtab->index;
    const auto label = section_label(*symtab);
    if (symtab->entsize != sizeof(Elf64_Sym))
        throw Error(label + ": entry size " + std::to_string(symtab->entsize) + " is not " +
                    std::to_string(sizeof(Elf64_Sym)));
    if (symtab->size % sizeof(Elf64_Sym) != 0)
        throw Error(label + ": size " + std::to_string(symtab->size) + " is not a multiple of the entry size");
    const Section& strtab = sections[symtab->link];
    if (strtab.type != SHT_STRTAB)
        throw Error(label + ": linked string table " + section_label(strtab) + " is not SHT_STRTAB");
    const uint64_t count = symtab->size / sizeof(Elf64_Sym);
    symbols.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
        auto what = label + ": symbol #" + std::to_string(i);
        auto sym = read_at<Elf64_Sym>(symtab->data, i * sizeof(Elf64_Sym), what);
        Symbol out;
        out.index = static_cast<uint32_t>(i);
        out.name = sym.st_name == 0 ? std::string() : string_at(strtab, sym.st_name, what);
        out.value = sym.st_value;
        out.size = sym.st_size;
        out.shndx = sym.st_shndx;
        out.type = ELF64_ST_TYPE(sym.st_info);
        out.bind = ELF64_ST_BIND(sym.st_info);
        out.visibility = ELF64_ST_VISIBILITY(sym.st_other);
        if (out.shndx != SHN_UNDEF && out.shndx < SHN_LORESERVE && out.shndx >= sections.size())
            throw Error(what + " ('" + out.name + "'): section index " + std::to_string(out.shndx) +
                        " is out of range (" + std::to_string(sections.size()) + " sections)");
        symbols.push_back(std::move(out));
    }
    return symbols;
}

template <typename Rel>
RelocationSection read_relocations(const Section& rel, const std::vector<Section>& sections, uint32_t symtab_index,
                                   size_t symbol_count)
{
    const auto label = section_label(rel);
    if (rel.entsize != sizeof(Rel))
        throw Error(label + ": entry size " + std::to_string(rel.entsize) + " is not " + std::to_string(sizeof(Rel)));
    if (rel.size % sizeof(Rel) != 0)
        throw Error(label + ": size " + std::to_string(rel.size) + " is not a multiple of the entry size");
    if (rel.link != symtab_index || symtab_index == 0)
        throw Error(label + ": linked section " + std::to_string(rel.link) + " is not the symbol table");
    if (rel.info == 0 || rel.info >= sections.size())
        throw Error(label + ": target section index " + std::to_string(rel.info) + " is out of range");
    const Section& target = sections[rel.info];
    RelocationSection out;
    out.section = rel.index;
    out.target = rel.info;
    const uint64_t count = rel.size / sizeof(Rel);
    out.entries.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
        auto what = label + ": relocation #" + std::to_string(i);
        auto r = read_at<Rel>(rel.data, i * sizeof(Rel), what);
        Relocation e;
        e.offset = r.r_offset;
        e.type = static_cast<uint32_t>(ELF64_R_TYPE(r.r_info));
        e.symbol = static_cast<uint32_t>(ELF64_R_SYM(r.r_info));
        if constexpr (std::is_same_v<Rel, Elf64_Rela>)
            e.addend = r.r_addend;
        if (e.symbol >= symbol_count)
            throw Error(what + ": symbol index " + std::to_string(e.symbol) + " is out of range (" +
                        std::to_string(symbol_count) + " symbols)");
        // Every relocation patches at least 4 bytes of its target.
        if (target.type != SHT_NOBITS && (e.offset > target.size || target.size - e.offset < 4))
            throw Error(what + ": offset " + hex(e.offset) + " is outside " + section_label(target) + " (" +
                        std::to_string(target.size) + " bytes)");
        out.entries.push_back(e);
    }
    return out;
}

} // namespace

const Section* ElfFile::find_section(std::string_view name) const
{
    for (const auto& s : sections)
        if (s.name == name)
            return &s;
    return nullptr;
}

ElfFile read(std::span<const std::byte> bytes)
{
    const auto ehdr = read_header(bytes);
    ElfFile file;
    file.machine = ehdr.e_machine;
    file.sections = read_sections(bytes, ehdr);
    uint32_t symtab_index = 0;
    file.symbols = read_symbols(file.sections, symtab_index);
    for (const auto& s : file.sections) {
        if (s.type == SHT_REL)
            file.relocations.push_back(
                read_relocations<Elf64_Rel>(s, file.sections, symtab_index, file.symbols.size()));
        else if (s.type == SHT_RELA)
            file.relocations.push_back(
                read_relocations<Elf64_Rela>(s, file.sections, symtab_index, file.symbols.size()));
    }
    return file;
}

} // namespace sockredir::elf
