// Unit tests of loader/ebpf/insn.hpp: the encodings the kernel expects, and the scan for helper calls.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "loader/ebpf/insn.hpp"

using namespace sockredir::ebpf;

namespace {

bool same(const bpf_insn& a, const bpf_insn& b)
{
    return std::memcmp(&a, &b, sizeof a) == 0;
}

} // namespace

TEST_CASE("instructions are encoded as the kernel's filter.h macros encode them")
{
    const auto mov = insn::mov_imm(BPF_REG_0, -1);
    CHECK(mov.code == (BPF_ALU64 | BPF_MOV | BPF_K));
    CHECK(mov.dst_reg == BPF_REG_0);
    CHECK(mov.imm == -1);
    const auto reg = insn::mov_reg(BPF_REG_6, BPF_REG_1);
    CHECK(reg.code == (BPF_ALU64 | BPF_MOV | BPF_X));
    CHECK(reg.dst_reg == BPF_REG_6);
    CHECK(reg.src_reg == BPF_REG_1);
    CHECK(insn::add_imm(BPF_REG_2, -4).code == (BPF_ALU64 | BPF_ADD | BPF_K));
    const auto st = insn::st_mem(BPF_W, BPF_REG_10, -4, 7);
    CHECK(st.code == (BPF_ST | BPF_MEM | BPF_W));
    CHECK(st.dst_reg == BPF_REG_10);
    CHECK(st.off == -4);
    CHECK(st.imm == 7);
    const auto ldx = insn::ldx_mem(BPF_DW, BPF_REG_2, BPF_REG_1, 8);
    CHECK(ldx.code == (BPF_LDX | BPF_MEM | BPF_DW));
    CHECK(ldx.dst_reg == BPF_REG_2);
    CHECK(ldx.src_reg == BPF_REG_1);
    CHECK(insn::stx_mem(BPF_DW, BPF_REG_10, BPF_REG_1, -8).code == (BPF_STX | BPF_MEM | BPF_DW));
    const auto jeq = insn::jmp_imm(BPF_JEQ, BPF_REG_2, 0, 3);
    CHECK(jeq.code == (BPF_JMP | BPF_JEQ | BPF_K));
    CHECK(jeq.off == 3);
    CHECK(insn::jmp_reg(BPF_JNE, BPF_REG_1, BPF_REG_2, -2).code == (BPF_JMP | BPF_JNE | BPF_X));
    CHECK(insn::ja(1).code == (BPF_JMP | BPF_JA));
    const auto call = insn::call_helper(BPF_FUNC_sk_storage_get);
    CHECK(call.code == (BPF_JMP | BPF_CALL));
    CHECK(call.src_reg == 0);
    CHECK(call.imm == BPF_FUNC_sk_storage_get);
    CHECK(insn::exit_insn().code == (BPF_JMP | BPF_EXIT));
}

TEST_CASE("ld_imm64 puts the low half of the value in the first slot and the high half in the second")
{
    const auto wide = insn::ld_imm64(BPF_REG_1, 0x1122334455667788LL);
    CHECK(wide[0].code == (BPF_LD | BPF_DW | BPF_IMM));
    CHECK(wide[0].dst_reg == BPF_REG_1);
    CHECK(static_cast<uint32_t>(wide[0].imm) == 0x55667788U);
    CHECK(wide[1].code == 0);
    CHECK(static_cast<uint32_t>(wide[1].imm) == 0x11223344U);
    const auto map = insn::ld_map_fd(BPF_REG_2, 42);
    CHECK(map[0].src_reg == BPF_PSEUDO_MAP_FD);
    CHECK(map[0].imm == 42);
    CHECK(map[1].imm == 0);
}

TEST_CASE("program() lays the parts out in order, an ld_imm64 as its two slots")
{
    const auto p = insn::program(insn::mov_imm(0, 1), insn::ld_map_fd(1, 3), insn::exit_insn());
    REQUIRE(p.size() == 4);
    CHECK(same(p[0], insn::mov_imm(0, 1)));
    CHECK(same(p[1], insn::ld_map_fd(1, 3)[0]));
    CHECK(same(p[2], insn::ld_map_fd(1, 3)[1]));
    CHECK(same(p[3], insn::exit_insn()));
}

TEST_CASE("helper_calls finds each helper once, ascending, and no bpf-to-bpf call, kfunc or ld_imm64 data")
{
    auto pseudo_call = insn::call_helper(5);
    pseudo_call.src_reg = BPF_PSEUDO_CALL;
    auto kfunc = insn::call_helper(7);
    kfunc.src_reg = BPF_PSEUDO_KFUNC_CALL;
    // The second slot of an ld_imm64 that happens to look like a call of helper 9.
    auto wide = insn::ld_imm64(BPF_REG_1, 0);
    wide[1] = insn::call_helper(9);
    const auto p = insn::program(insn::call_helper(BPF_FUNC_sk_storage_get), pseudo_call, kfunc, wide,
                                 insn::call_helper(BPF_FUNC_map_lookup_elem),
                                 insn::call_helper(BPF_FUNC_sk_storage_get), insn::exit_insn());
    CHECK(insn::helper_calls(p) ==
          std::vector<uint32_t>{BPF_FUNC_map_lookup_elem, static_cast<uint32_t>(BPF_FUNC_sk_storage_get)});
    CHECK(insn::helper_calls({}).empty());
}
