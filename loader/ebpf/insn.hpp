// The one BPF instruction builder: plain bpf_insn values named after the kernel's own macros (include/linux/filter.h:
// BPF_MOV64_IMM, BPF_LD_MAP_FD, BPF_EMIT_CALL, ...), for the feature probes and the tests; and the scan for helpers.
#pragma once

#include <linux/bpf.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace sockredir::ebpf::insn {

// One 8-byte instruction slot (BPF_RAW_INSN).
constexpr bpf_insn raw(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

// The two slots of ld_imm64, the only 16-byte instruction: the low 32 bits of the value in the first slot's imm,
// the high 32 bits in the second's.
using Wide = std::array<bpf_insn, 2>;

// r<dst> = imm, 64-bit (BPF_MOV64_IMM).
constexpr bpf_insn mov_imm(uint8_t dst, int32_t imm)
{
    return raw(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
}
// r<dst> = r<src> (BPF_MOV64_REG).
constexpr bpf_insn mov_reg(uint8_t dst, uint8_t src)
{
    return raw(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}
// r<dst> <op>= imm, 64-bit; op is BPF_ADD, BPF_SUB, BPF_AND, ... (BPF_ALU64_IMM).
constexpr bpf_insn alu_imm(uint8_t op, uint8_t dst, int32_t imm)
{
    return raw(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm);
}
constexpr bpf_insn add_imm(uint8_t dst, int32_t imm)
{
    return alu_imm(BPF_ADD, dst, imm);
}

// r<dst> = imm64 with src_reg saying what the value is: 0 a plain number, BPF_PSEUDO_MAP_FD a map's fd, ...
// (BPF_LD_IMM64_RAW).
constexpr Wide ld_imm64_raw(uint8_t dst, uint8_t src, int64_t imm)
{
    const auto value = static_cast<uint64_t>(imm);
    return {raw(BPF_LD | BPF_DW | BPF_IMM, dst, src, 0, static_cast<int32_t>(static_cast<uint32_t>(value))),
            raw(0, 0, 0, 0, static_cast<int32_t>(static_cast<uint32_t>(value >> 32)))};
}
constexpr Wide ld_imm64(uint8_t dst, int64_t imm)
{
    return ld_imm64_raw(dst, 0, imm);
}
// r<dst> = the map whose fd is `fd`: the kernel resolves src_reg BPF_PSEUDO_MAP_FD + imm to the map (BPF_LD_MAP_FD).
constexpr Wide ld_map_fd(uint8_t dst, int fd)
{
    return ld_imm64_raw(dst, BPF_PSEUDO_MAP_FD, fd);
}

// Memory; size is BPF_B, BPF_H, BPF_W or BPF_DW.
// *(size *)(r<base> + off) = imm (BPF_ST_MEM).
constexpr bpf_insn st_mem(uint8_t size, uint8_t base, int16_t off, int32_t imm)
{
    return raw(BPF_ST | BPF_MEM | size, base, 0, off, imm);
}
// *(size *)(r<base> + off) = r<src> (BPF_STX_MEM).
constexpr bpf_insn stx_mem(uint8_t size, uint8_t base, uint8_t src, int16_t off)
{
    return raw(BPF_STX | BPF_MEM | size, base, src, off, 0);
}
// r<dst> = *(size *)(r<base> + off) (BPF_LDX_MEM).
constexpr bpf_insn ldx_mem(uint8_t size, uint8_t dst, uint8_t base, int16_t off)
{
    return raw(BPF_LDX | BPF_MEM | size, dst, base, off, 0);
}

// Jumps: `off` counts instruction slots after the jump. op is BPF_JEQ, BPF_JNE, BPF_JGT, ...
// if r<dst> <op> imm goto +off (BPF_JMP_IMM).
constexpr bpf_insn jmp_imm(uint8_t op, uint8_t dst, int32_t imm, int16_t off)
{
    return raw(BPF_JMP | op | BPF_K, dst, 0, off, imm);
}
// if r<dst> <op> r<src> goto +off (BPF_JMP_REG).
constexpr bpf_insn jmp_reg(uint8_t op, uint8_t dst, uint8_t src, int16_t off)
{
    return raw(BPF_JMP | op | BPF_X, dst, src, off, 0);
}
// goto +off (BPF_JMP_A).
constexpr bpf_insn ja(int16_t off)
{
    return raw(BPF_JMP | BPF_JA, 0, 0, off, 0);
}

// r0 = helper(r1, ..., r5): a call of the kernel helper `id`, enum bpf_func_id (BPF_EMIT_CALL). src_reg 0 is what
// makes it a helper call; BPF_PSEUDO_CALL is a call of another BPF function, BPF_PSEUDO_KFUNC_CALL a kfunc.
constexpr bpf_insn call_helper(int32_t id)
{
    return raw(BPF_JMP | BPF_CALL, 0, 0, 0, id);
}
// return r0 (BPF_EXIT_INSN).
constexpr bpf_insn exit_insn()
{
    return raw(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

// A program from its instructions in order; each part is one slot (bpf_insn) or the two of an ld_imm64 (Wide):
//   program(mov_reg(6, 1), ld_map_fd(2, fd), call_helper(BPF_FUNC_map_lookup_elem), mov_imm(0, 0), exit_insn())
inline void append(std::vector<bpf_insn>& out, const bpf_insn& slot)
{
    out.push_back(slot);
}
inline void append(std::vector<bpf_insn>& out, const Wide& slots)
{
    out.insert(out.end(), slots.begin(), slots.end());
}
template <typename... Parts> std::vector<bpf_insn> program(const Parts&... parts)
{
    std::vector<bpf_insn> out;
    out.reserve(sizeof...(parts) * 2);
    (append(out, parts), ...);
    return out;
}

constexpr bool is_ld_imm64(const bpf_insn& i)
{
    return i.code == (BPF_LD | BPF_DW | BPF_IMM);
}
constexpr bool is_helper_call(const bpf_insn& i)
{
    return i.code == (BPF_JMP | BPF_CALL) && i.src_reg == 0;
}

// The helper ids the instructions call, ascending, each once: what a program needs of the kernel beyond its type.
// bpf-to-bpf calls and kfunc calls (src_reg BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL) are not helpers; the second slot
// of an ld_imm64 is data.
inline std::vector<uint32_t> helper_calls(std::span<const bpf_insn> insns)
{
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < insns.size(); ++i) {
        if (is_ld_imm64(insns[i]))
            ++i;
        else if (is_helper_call(insns[i]))
            ids.push_back(static_cast<uint32_t>(insns[i].imm));
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
}

} // namespace sockredir::ebpf::insn
