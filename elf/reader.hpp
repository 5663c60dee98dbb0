// ELF64 little-endian reader: sections, symbols and relocations of a relocatable object, every field checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loader/base/error.hpp"

namespace sockredir::elf {

using base::Error;

struct Section {
    uint32_t index = 0;
    std::string name;
    uint32_t type = 0;
    uint64_t flags = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
    uint32_t link = 0;
    uint32_t info = 0;
    uint64_t addralign = 0;
    uint64_t entsize = 0;
    // The section's bytes inside the input; empty for SHT_NOBITS.
    std::span<const std::byte> data;
};

struct Symbol {
    uint32_t index = 0;
    std::string name;
    uint64_t value = 0;
    uint64_t size = 0;
    uint16_t shndx = 0;
    uint8_t type = 0;       // STT_*
    uint8_t bind = 0;       // STB_*
    uint8_t visibility = 0; // STV_* (the low bits of st_other)
};

struct Relocation {
    uint64_t offset = 0; // into the target section
    uint32_t type = 0;   // R_BPF_*
    uint32_t symbol = 0; // index into ElfFile::symbols
    int64_t addend = 0;  // SHT_RELA only
};

struct RelocationSection {
    uint32_t section = 0; // index of the SHT_REL / SHT_RELA section itself
    uint32_t target = 0;  // index of the section the relocations apply to
    std::vector<Relocation> entries;
};

// What the file says, nothing more. Spans point into the bytes given to read();
// an ElfFile must not outlive them.
struct ElfFile {
    uint16_t machine = 0;
    std::vector<Section> sections;
    std::vector<Symbol> symbols; // symbols[0] is the null symbol
    std::vector<RelocationSection> relocations;

    const Section* find_section(std::string_view name) const;
};

// Parses an ELF64 little-endian relocatable object. Throws base::Error
// naming the section and the defect on any malformed input.
ElfFile read(std::span<const std::byte> bytes);

} // namespace sockredir::elf
