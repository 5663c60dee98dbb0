// The BPF object model: programs, maps, license and map relocations, as the ELF file states them (no syscalls).
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "loader/base/error.hpp"

namespace sockredir::elf {

using base::Error;

// The legacy map definition of the BPF ELF ABI: five u32 in the section "maps" (libbpf's struct bpf_map_def,
// aya-obj's bpf_map_def). It is the loader's ABI, not an application's.
struct LegacyMapDef {
    uint32_t type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t max_entries;
    uint32_t map_flags;
};

// One map definition: a VAR of the DATASEC ".maps" in the object's BTF (as libbpf declares maps), or a symbol of
// the legacy section "maps".
struct MapSpec {
    std::string name;
    uint32_t type = 0;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t flags = 0;
    // BTF-defined maps: the key and value types in the object's BTF (0: declared by size only).
    uint32_t btf_key_type_id = 0;
    uint32_t btf_value_type_id = 0;
};

// An ld_imm64 at instruction `insn` that must be patched with the fd of map `map`.
struct MapRelocation {
    size_t insn = 0;
    size_t map = 0;
};

struct ProgramSpec {
    std::string name;    // the function symbol
    std::string section; // the section name, which selects the program type
    std::vector<bpf_insn> insns;
    std::vector<MapRelocation> relocations;
    // From .BTF.ext, with instruction indexes relative to the program: its functions and source lines (for
    // BPF_PROG_LOAD), and its CO-RE relocations (insn_off in bytes from the program's start).
    std::vector<bpf_func_info> func_info;
    std::vector<bpf_line_info> line_info;
    std::vector<BtfCoreRelo> core_relos;
};

struct ObjectSpec {
    std::string license;
    std::vector<MapSpec> maps;
    std::vector<ProgramSpec> programs;
    // The object's .BTF, with DATASEC sizes and VAR offsets fixed up as the kernel needs them; absent when the
    // object has none (compiled without -g).
    std::optional<Btf> btf;

    const MapSpec* find_map(std::string_view name) const;
    const ProgramSpec* find_program(std::string_view name) const;
};

// Relocation types of the BPF ELF ABI that <elf.h> does not name
// (llvm/BinaryFormat/ELFRelocs/BPF.def). Only names for messages.
const char* relocation_name(uint32_t type);

// Extracts the object model from ELF bytes. Throws sockredir::Error naming the
// section and the defect on malformed input or unsupported features.
ObjectSpec parse_object(std::span<const std::byte> bytes);

} // namespace sockredir::elf
