// CO-RE: resolving an object's .BTF.ext core relocations against a target BTF (the kernel's) and patching the
// instructions, as libbpf's relo_core.c does. Pure: the target BTF is handed in, nothing is read from the system.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "elf/btf.hpp"

namespace sockredir::elf {

// What one relocation resolved to: `exists` is false when no target type or field matched (the instruction is then
// poisoned, except for the *_EXISTS and the type-based kinds, which become 0, as libbpf makes them).
struct CoreResolution {
    bool exists = false;
    uint64_t local_value = 0; // the value clang compiled in (the local BTF's answer)
    uint64_t value = 0;       // the target's answer, patched into the instruction
    uint32_t target_type = 0; // the matching target type's id, 0 when none
    // A load or store whose field changed size in the target (a u32 that became a u64): its new size in bytes.
    uint32_t load_size = 0;
    // The field changed size but its access cannot follow (a signed integer, whose sign a zero-extending load
    // loses; an enum; a struct): the load or store is poisoned, as libbpf does.
    bool unsafe_resize = false;
};

// Resolves one relocation: the local spec from `relo.type_id` and its access string in `local`, every target type of
// the same kind and essential name (the name before any "___" suffix) in `target`, the field found by name along
// the same path (through anonymous members, as C does). All matching candidates must agree. Throws base::Error
// naming the relocation for a malformed access string, an unsupported kind, or candidates that disagree.
CoreResolution resolve_core_relocation(const Btf& local, const BtfCoreRelo& relo, const Btf& target);

// The instruction the relocation names (relo.insn_off / 8 - first_insn) patched with the resolution: the immediate
// of an ALU or ld_imm64 instruction, the offset of a load or store (and its size when the field's size changed, or
// poison when its size cannot follow). An unresolved field relocation poisons the instruction into `call 0xbad2310`,
// so the verifier names it if the program can reach it (libbpf does the same). Throws base::Error when the
// instruction does not hold the local value clang compiled in, or the new value does not fit.
void patch_core_instruction(std::vector<bpf_insn>& insns, size_t index, const BtfCoreRelo& relo,
                            const CoreResolution& resolution, const std::string& program);

// Every CO-RE relocation of one program (the records of its section whose insn_off lies in the program) resolved
// against `target` and patched. Returns how many were resolved and how many poisoned.
struct CoreStats {
    size_t resolved = 0;
    size_t poisoned = 0;
};
CoreStats apply_core_relocations(std::vector<bpf_insn>& insns, std::span<const BtfCoreRelo> relos,
                                 uint64_t program_offset, const Btf& local, const Btf& target,
                                 const std::string& program);

// The instruction libbpf and this loader put where a relocation could not be resolved.
inline constexpr int32_t kCorePoisonImm = 0xbad2310;

} // namespace sockredir::elf
