// Unit tests of elf/core: CO-RE relocations resolved against hand-built kernel-like BTF (fields moved, nested in
// anonymous members, resized, missing, bitfields, flavours, arrays, enums, types), the instructions patched, every
// refusal with its message; and the tracing object's relocations against this kernel's BTF.
#include <doctest/doctest.h>

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "elf/core.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/spec.hpp"
#include "tests/btf_builder.hpp"
#include "tests/skip.hpp"

using namespace sockredir;
using namespace sockredir::elf;
using namespace sockredir::test;
namespace insn = sockredir::ebpf::insn;

namespace {

// A kflag member's offset word: a bitfield of `bits` bits at bit `offset`.
constexpr uint32_t bitfield(uint32_t bits, uint32_t offset)
{
    return bits << 24 | offset;
}

// A record as parse_btf_ext makes it: the access string and its accessors.
BtfCoreRelo relo(uint32_t type_id, const std::string& access, uint32_t kind, uint32_t insn_off = 0)
{
    BtfCoreRelo r;
    r.insn_off = insn_off;
    r.type_id = type_id;
    r.kind = kind;
    r.access = access;
    size_t at = 0;
    while (at < access.size()) {
        const size_t colon = access.find(':', at);
        const size_t end = colon == std::string::npos ? access.size() : colon;
        r.accessors.push_back(static_cast<uint32_t>(std::stoul(access.substr(at, end - at))));
        at = end + 1;
    }
    return r;
}

// The local BTF clang emits for trace_common.h's preserve_access_index structs:
//   struct file { unsigned int f_flags; };
//   struct socket { struct file *file; struct sock *sk; };
//   struct sock { struct socket *sk_socket; };
struct Local {
    static constexpr uint32_t kUint = 1, kFile = 2, kSocket = 5, kSock = 6;
    Btf btf;
    Local()
    {
        BtfBuilder b;
        b.add_int("unsigned int", 4, 0, 32);                         // 1
        b.add_struct("file", 4, {{"f_flags", kUint, 0}});            // 2
        b.add_ptr(kFile);                                            // 3
        b.add_ptr(kSock);                                            // 4
        b.add_struct("socket", 16, {{"file", 3, 0}, {"sk", 4, 64}}); // 5
        b.add_struct("sock", 8, {{"sk_socket", 7, 0}});              // 6
        b.add_ptr(kSocket);                                          // 7
        btf = parse_btf(b.build(), "local");
    }
};

// A kernel's layout of the same structs: every field moved, with members before it.
//   struct file { unsigned int f_mode; unsigned long f_pos; ...; unsigned int f_flags @ 40; } (64 bytes)
//   struct socket { int state; short type; unsigned long flags; struct file *file @ 16; struct sock *sk @ 24; }
//   struct sock { struct sock_common __sk_common; ...; struct socket *sk_socket @ 600; } (800 bytes)
Btf kernel_moved()
{
    BtfBuilder b;
    const auto uint = b.add_int("unsigned int", 4, 0, 32);
    const auto ulong = b.add_int("unsigned long", 8, 0, 64);
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto sh = b.add_int("short", 2, BTF_INT_SIGNED, 16);
    const auto file = b.add_struct("file", 64, {{"f_mode", uint, 0}, {"f_pos", ulong, 64}, {"f_flags", uint, 320}});
    const auto file_ptr = b.add_ptr(file);
    const auto sock_ptr = b.add_ptr(file_ptr + 4); // struct sock, below
    const auto socket = b.add_struct(
        "socket", 32,
        {{"state", i, 0}, {"type", sh, 32}, {"flags", ulong, 64}, {"file", file_ptr, 128}, {"sk", sock_ptr, 192}});
    const auto socket_ptr = b.add_ptr(socket);
    const auto sock = b.add_struct("sock", 800, {{"__sk_common", sock_ptr + 4, 0}, {"sk_socket", socket_ptr, 4800}});
    REQUIRE(sock == file_ptr + 4);
    b.add_struct("sock_common", 136, {{"skc_hash", uint, 0}});
    return parse_btf(b.build(), "kernel");
}

// The message `f` throws base::Error with, or "no error".
template <typename F> std::string error_of(F&& f)
{
    try {
        f();
    } catch (const base::Error& e) {
        return e.what();
    }
    return "no error";
}

// r<dst> = *(size *)(r1 + off), the load clang emits for a preserve_access_index field.
bpf_insn load(uint8_t size, int16_t off)
{
    return insn::ldx_mem(size, BPF_REG_2, BPF_REG_1, off);
}

std::vector<bpf_insn> program(std::initializer_list<bpf_insn> body)
{
    std::vector<bpf_insn> out(body);
    out.push_back(insn::exit_insn());
    return out;
}

// Resolves `r` against `target` and patches a copy of `insns` at instruction `index`.
std::vector<bpf_insn> patched(std::vector<bpf_insn> insns, size_t index, const Btf& local, const BtfCoreRelo& r,
                              const Btf& target)
{
    const auto res = resolve_core_relocation(local, r, target);
    patch_core_instruction(insns, index, r, res, "p");
    return insns;
}

bool is_poison(const bpf_insn& i)
{
    return i.code == (BPF_JMP | BPF_CALL) && i.imm == kCorePoisonImm && i.src_reg == 0 && i.dst_reg == 0;
}

} // namespace

// --- fields ------------------------------------------------------------------------------------------------------

TEST_CASE("a field the kernel keeps at another offset, after other members, is read from there")
{
    const Local local;
    const Btf kernel = kernel_moved();
    for (const auto& [root, member, offset] : {std::tuple{Local::kSock, 0u, 600}, std::tuple{Local::kSocket, 0u, 16},
                                               std::tuple{Local::kSocket, 1u, 24}, std::tuple{Local::kFile, 0u, 40}}) {
        const auto r = relo(root, "0:" + std::to_string(member), BPF_CORE_FIELD_BYTE_OFFSET);
        CAPTURE(r.access);
        CAPTURE(local.btf.label(root));
        const auto res = resolve_core_relocation(local.btf, r, kernel);
        CHECK(res.exists);
        CHECK(res.local_value == (root == Local::kSocket && member == 1 ? 8U : 0U));
        CHECK(res.value == static_cast<uint64_t>(offset));
        CHECK(res.target_type == *kernel.find(BTF_KIND_STRUCT, local.btf.name(root)));
        CHECK(res.load_size == 0); // same size: the load keeps its width
        const uint8_t size = root == Local::kFile ? BPF_W : BPF_DW;
        const auto out = patched(program({load(size, static_cast<int16_t>(res.local_value))}), 0, local.btf, r, kernel);
        CHECK(out[0].off == offset);
        CHECK(out[0].code == (BPF_LDX | BPF_MEM | size));
        CHECK(out[0].dst_reg == BPF_REG_2);
        CHECK(out[0].src_reg == BPF_REG_1);
    }
}

TEST_CASE("a field inside anonymous structs and unions is found through them, their offsets added up")
{
    // struct sock { struct sock_common __sk_common; union { long x; struct { int a; int b; struct socket *sk_socket; };
    // }; } with the union at byte 136 and sk_socket 8 bytes into the inner struct.
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);                                              // 1
    const auto l = b.add_int("long", 8, BTF_INT_SIGNED, 64);                                             // 2
    const auto common = b.add_struct("sock_common", 136, {{"skc_hash", i, 0}});                          // 3
    const auto socket = b.add_struct("socket", 8, {{"sk", i, 0}});                                       // 4
    const auto socket_ptr = b.add_ptr(socket);                                                           // 5
    const auto inner = b.add_struct("", 16, {{"a", i, 0}, {"b", i, 32}, {"sk_socket", socket_ptr, 64}}); // 6
    const auto onion = b.add_union("", 16, {{"x", l, 0}, {"", inner, 0}});                               // 7
    const auto tdef = b.add_typedef("onion_t", onion); // 8: a typedef'd anonymous member
    b.add_struct("sock", 152, {{"__sk_common", common, 0}, {"", tdef, 136 * 8}});
    const Btf kernel = parse_btf(b.build(), "kernel");

    const Local local;
    const auto r = relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res = resolve_core_relocation(local.btf, r, kernel);
    CHECK(res.exists);
    CHECK(res.value == 144);
    CHECK(patched(program({load(BPF_DW, 0)}), 0, local.btf, r, kernel)[0].off == 144);

    // The local side may name the anonymous members too (clang writes their indices into the access string).
    BtfBuilder lb;
    const auto li = lb.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto lsocket_ptr = lb.add_ptr(lb.add_struct("socket", 4, {{"sk", li, 0}}));
    const auto linner = lb.add_struct("", 12, {{"b", li, 0}, {"sk_socket", lsocket_ptr, 32}});
    const auto lsock = lb.add_struct("sock", 16, {{"pad", li, 0}, {"", linner, 32}});
    const Btf local2 = parse_btf(lb.build(), "local");
    const auto r2 = relo(lsock, "0:1:1", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res2 = resolve_core_relocation(local2, r2, kernel);
    CHECK(res2.local_value == 8);
    CHECK(res2.value == 144);
    const auto b_off = resolve_core_relocation(local2, relo(lsock, "0:1:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel);
    CHECK(b_off.local_value == 4);
    CHECK(b_off.value == 140);
}

TEST_CASE("an unsigned field that grew from u32 to u64 is read at its new offset with an 8-byte load")
{
    BtfBuilder b;
    const auto ulong = b.add_int("unsigned long", 8, 0, 64);
    const auto uint = b.add_int("unsigned int", 4, 0, 32);
    b.add_struct("file", 16, {{"f_mode", uint, 0}, {"f_flags", ulong, 64}});
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    const auto r = relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res = resolve_core_relocation(local.btf, r, kernel);
    CHECK(res.value == 8);
    CHECK(res.load_size == 8);
    const auto out = patched(program({load(BPF_W, 0)}), 0, local.btf, r, kernel);
    CHECK(out[0].code == (BPF_LDX | BPF_MEM | BPF_DW));
    CHECK(out[0].off == 8);
    // BYTE_SIZE says the new size too.
    const auto size = resolve_core_relocation(local.btf, relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_SIZE), kernel);
    CHECK(size.local_value == 4);
    CHECK(size.value == 8);
}

TEST_CASE("a field the kernel lacks poisons its load, and FIELD_EXISTS says 0 where it said 1")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    b.add_struct("sock", 8, {{"sk_state", i, 0}, {"sk_socket___old", i, 32}}); // a flavoured member name is another
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;

    const auto off = relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 8);
    const auto res = resolve_core_relocation(local.btf, off, kernel);
    CHECK_FALSE(res.exists);
    CHECK(res.target_type == 0);
    auto insns = program({insn::mov_imm(BPF_REG_0, 0), load(BPF_DW, 0)});
    patch_core_instruction(insns, 1, off, res, "p");
    CHECK(is_poison(insns[1]));
    CHECK(insns[0].code == (BPF_ALU64 | BPF_MOV | BPF_K)); // the others are untouched
    CHECK(insns[2].code == (BPF_JMP | BPF_EXIT));

    const auto exists = relo(Local::kSock, "0:0", BPF_CORE_FIELD_EXISTS);
    const auto e = resolve_core_relocation(local.btf, exists, kernel);
    CHECK_FALSE(e.exists);
    CHECK(e.local_value == 1);
    const auto out = patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, exists, kernel);
    CHECK(out[0].code == (BPF_ALU64 | BPF_MOV | BPF_K));
    CHECK(out[0].imm == 0);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, exists, kernel_moved())[0].imm == 1);
    // Every other field kind of a missing field is poisoned, whatever the instruction.
    for (uint32_t kind :
         {BPF_CORE_FIELD_BYTE_SIZE, BPF_CORE_FIELD_SIGNED, BPF_CORE_FIELD_LSHIFT_U64, BPF_CORE_FIELD_RSHIFT_U64}) {
        CAPTURE(kind);
        const auto k = relo(Local::kSock, "0:0", kind);
        const auto lv = resolve_core_relocation(local.btf, k, Btf{}).local_value;
        CHECK(is_poison(
            patched(program({insn::mov_imm(BPF_REG_0, static_cast<int32_t>(lv))}), 0, local.btf, k, kernel)[0]));
    }
}

TEST_CASE("a kernel with no such struct at all poisons the field's load")
{
    BtfBuilder b;
    b.add_int("int", 4, BTF_INT_SIGNED, 32);
    b.add_union("sock", 4, {{"sk_socket", 1, 0}}); // a union is not a struct: no candidate
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    const auto r = relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK_FALSE(resolve_core_relocation(local.btf, r, kernel).exists);
    CHECK_FALSE(resolve_core_relocation(local.btf, r, Btf{}).exists);
}

TEST_CASE("a field of the same name but an incompatible type does not match")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    b.add_struct("sock", 8, {{"sk_socket", i, 0}}); // an int where the program reads a pointer
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    CHECK_FALSE(
        resolve_core_relocation(local.btf, relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel).exists);
    // A struct member read through its own fields matches any struct or union of the same name... and an int any int.
    CHECK(resolve_core_relocation(Local().btf, relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel_moved())
              .exists);
}

TEST_CASE("a signed or non-integer field that changed size poisons its load; an unsigned one's store is resized")
{
    // struct task { int prio; long nr; struct sock *sk; } locally; the kernel's prio a long, nr an int, sk a ptr.
    BtfBuilder lb;
    const auto li = lb.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto ll = lb.add_int("long", 8, BTF_INT_SIGNED, 64);
    const auto lu = lb.add_int("unsigned int", 4, 0, 32);
    const auto lsock = lb.add_struct("sock", 4, {{"x", li, 0}});
    const auto ltask = lb.add_struct(
        "task", 24,
        {{"prio", li, 0}, {"nr", ll, 64}, {"cnt", lu, 128}, {"sk", lb.add_ptr(lsock), 192}, {"s", lsock, 160}});
    const Btf local = parse_btf(lb.build(), "local");
    BtfBuilder kb;
    const auto ki = kb.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto kl = kb.add_int("long", 8, BTF_INT_SIGNED, 64);
    const auto kul = kb.add_int("unsigned long", 8, 0, 64);
    const auto ksock = kb.add_struct("sock", 8, {{"x", ki, 0}, {"y", ki, 32}});
    kb.add_struct(
        "task", 48,
        {{"prio", kl, 0}, {"nr", ki, 64}, {"cnt", kul, 128}, {"sk", kb.add_ptr(ksock), 192}, {"s", ksock, 256}});
    const Btf kernel = parse_btf(kb.build(), "kernel");

    const auto prio = relo(ltask, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(resolve_core_relocation(local, prio, kernel).unsafe_resize);
    CHECK(is_poison(patched(program({load(BPF_W, 0)}), 0, local, prio, kernel)[0]));
    // s64 -> s32: a zero-extending 4-byte load would turn -1 into 4294967295.
    CHECK(is_poison(
        patched(program({load(BPF_DW, 8)}), 0, local, relo(ltask, "0:1", BPF_CORE_FIELD_BYTE_OFFSET), kernel)[0]));
    // A struct read whole (its address taken as an offset) is no load: the ALU offset is patched.
    const auto s = relo(ltask, "0:4", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(patched(program({insn::add_imm(BPF_REG_1, 20)}), 0, local, s, kernel)[0].imm == 32);
    // An unsigned store follows the field's size, as a load does.
    const auto cnt = relo(ltask, "0:2", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto out = patched(program({insn::stx_mem(BPF_W, BPF_REG_1, BPF_REG_2, 16)}), 0, local, cnt, kernel);
    CHECK(out[0].code == (BPF_STX | BPF_MEM | BPF_DW));
    CHECK(out[0].off == 16);
    // A pointer of the same size is read as it was.
    const auto sk = relo(ltask, "0:3", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(patched(program({load(BPF_DW, 24)}), 0, local, sk, kernel)[0].code == (BPF_LDX | BPF_MEM | BPF_DW));

    auto insns = program({load(BPF_W, 0), load(BPF_DW, 24)});
    const std::vector<BtfCoreRelo> relos{relo(ltask, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 0),
                                         relo(ltask, "0:3", BPF_CORE_FIELD_BYTE_OFFSET, 8)};
    const auto stats = apply_core_relocations(insns, relos, 0, local, kernel, "p");
    CHECK(stats.resolved == 1);
    CHECK(stats.poisoned == 1);
}

// --- bitfields -----------------------------------------------------------------------------------------------------

namespace {

// struct bits { unsigned int a:3; unsigned int b:5; int c:4; }; as clang lays it out (kflag, 4 bytes).
struct LocalBits {
    static constexpr uint32_t kBits = 3;
    Btf btf;
    LocalBits()
    {
        BtfBuilder b;
        const auto uint = b.add_int("unsigned int", 4, 0, 32);
        const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
        b.add_struct("bits", 4, {{"a", uint, bitfield(3, 0)}, {"b", uint, bitfield(5, 3)}, {"c", i, bitfield(4, 8)}},
                     true);
        btf = parse_btf(b.build(), "local");
    }
};

// The kernel's struct bits: `b` at bit `b_at`, `c` at `c_at`, behind a plain u32.
Btf kernel_bits(uint32_t b_at, uint32_t c_at, uint32_t size = 8)
{
    BtfBuilder b;
    const auto uint = b.add_int("unsigned int", 4, 0, 32);
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    b.add_struct(
        "bits", size,
        {{"pad", uint, 0}, {"a", uint, bitfield(3, 32)}, {"b", uint, bitfield(5, b_at)}, {"c", i, bitfield(4, c_at)}},
        true);
    return parse_btf(b.build(), "kernel");
}

uint64_t local_value(const Btf& local, const BtfCoreRelo& r)
{
    return resolve_core_relocation(local, r, Btf{}).local_value;
}

uint64_t target_value(const Btf& local, const BtfCoreRelo& r, const Btf& kernel)
{
    const auto res = resolve_core_relocation(local, r, kernel);
    REQUIRE(res.exists);
    return res.value;
}

} // namespace

TEST_CASE("a bitfield's byte offset, byte size, shifts and signedness follow the kernel's layout")
{
    const LocalBits local;
    const auto bits = LocalBits::kBits;
    // Local: b at bits 3..7 of a 4-byte word at 0; c at bits 8..11, signed.
    CHECK(local_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_OFFSET)) == 0);
    CHECK(local_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_SIZE)) == 4);
    CHECK(local_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_LSHIFT_U64)) == 56);
    CHECK(local_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_RSHIFT_U64)) == 59);
    CHECK(local_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_SIGNED)) == 0);
    CHECK(local_value(local.btf, relo(bits, "0:2", BPF_CORE_FIELD_SIGNED)) == 1);
    CHECK(local_value(local.btf, relo(bits, "0:2", BPF_CORE_FIELD_LSHIFT_U64)) == 52);
    CHECK(local_value(local.btf, relo(bits, "0:2", BPF_CORE_FIELD_RSHIFT_U64)) == 60);

    // Kernel: b at bit 40 (in the word at byte 4), c at bit 45.
    const Btf kernel = kernel_bits(40, 45);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_OFFSET), kernel) == 4);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_SIZE), kernel) == 4);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_LSHIFT_U64), kernel) == 64 - (40 + 5 - 32));
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_RSHIFT_U64), kernel) == 59);
    CHECK(target_value(local.btf, relo(bits, "0:2", BPF_CORE_FIELD_LSHIFT_U64), kernel) == 64 - (45 + 4 - 32));
    CHECK(target_value(local.btf, relo(bits, "0:2", BPF_CORE_FIELD_SIGNED), kernel) == 1);
    // A bitfield load's size is the relocation's business (BYTE_SIZE), not the load's: no load size is set.
    CHECK(resolve_core_relocation(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_OFFSET), kernel).load_size == 0);

    // The shifts patched into the ALU instructions clang emits for BPF_CORE_READ_BITFIELD.
    const auto lshift = relo(bits, "0:1", BPF_CORE_FIELD_LSHIFT_U64);
    const auto out = patched(program({insn::alu_imm(BPF_LSH, BPF_REG_1, 56)}), 0, local.btf, lshift, kernel);
    CHECK(out[0].code == (BPF_ALU64 | BPF_LSH | BPF_K));
    CHECK(out[0].imm == 51);
}

TEST_CASE("a bitfield that straddles its word is read with the next wider load, and one no u64 covers is refused")
{
    const LocalBits local;
    const auto bits = LocalBits::kBits;
    // b at bits 30..34: no 4-byte word holds it, the 8-byte word at 0 does.
    const Btf wide = kernel_bits(30, 45);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_SIZE), wide) == 8);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_OFFSET), wide) == 0);
    CHECK(target_value(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_LSHIFT_U64), wide) == 64 - 35);
    // b at bits 62..66: no aligned 8-byte load covers it.
    const Btf split = kernel_bits(62, 70, 16);
    CHECK(error_of([&] {
              (void)resolve_core_relocation(local.btf, relo(bits, "0:1", BPF_CORE_FIELD_BYTE_SIZE), split);
          }) == "CO-RE relocation byte_sz at instruction 0 on type [3] STRUCT 'bits' access '0:1': a bitfield that no "
                "8-byte load covers");
}

// --- candidates: flavours, several, disagreeing ---------------------------------------------------------------------

TEST_CASE("a local struct with a ___flavour suffix matches the kernel's struct of its essential name")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto socket_ptr = b.add_ptr(b.add_struct("socket___v61", 8, {{"x", i, 0}}));
    const auto sock = b.add_struct("sock___v61", 16, {{"sk_socket", socket_ptr, 64}});
    const Btf local = parse_btf(b.build(), "local");

    const Btf kernel = kernel_moved();
    const auto r = relo(sock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res = resolve_core_relocation(local, r, kernel);
    CHECK(res.exists);
    CHECK(res.local_value == 8);
    CHECK(res.value == 600);
    CHECK(res.target_type == *kernel.find(BTF_KIND_STRUCT, "sock"));
    // And the other way round: a kernel type with a flavour (bpftool's ___2 for a second "sock").
    BtfBuilder kb;
    const auto ki = kb.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto ksocket_ptr = kb.add_ptr(kb.add_struct("socket", 4, {{"x", ki, 0}}));
    const auto ksock = kb.add_struct("sock___2", 40, {{"pad", ki, 0}, {"sk_socket", ksocket_ptr, 256}});
    const Btf kernel2 = parse_btf(kb.build(), "kernel");
    const auto res2 =
        resolve_core_relocation(Local().btf, relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel2);
    CHECK(res2.value == 32);
    CHECK(res2.target_type == ksock);
}

TEST_CASE("several kernel candidates that agree resolve; a candidate without the field is passed over")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto socket_ptr = b.add_ptr(b.add_struct("socket", 4, {{"x", i, 0}}));
    const auto without = b.add_struct("sock", 4, {{"sk_state", i, 0}});
    const auto first = b.add_struct("sock___1", 24, {{"sk_state", i, 0}, {"sk_socket", socket_ptr, 128}});
    b.add_struct("sock___2", 32, {{"sk_socket", socket_ptr, 128}, {"sk_state", i, 192}});
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    const auto res = resolve_core_relocation(local.btf, relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel);
    CHECK(res.exists);
    CHECK(res.value == 16);
    CHECK(res.target_type == first);
    CHECK(res.target_type != without);
}

TEST_CASE("kernel candidates that disagree on a field's offset are refused, naming both answers")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto socket_ptr = b.add_ptr(b.add_struct("socket", 4, {{"x", i, 0}}));
    b.add_struct("sock", 24, {{"sk_socket", socket_ptr, 128}});
    const auto other = b.add_struct("sock___2", 32, {{"sk_socket", socket_ptr, 192}});
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    CHECK(error_of([&] {
              (void)resolve_core_relocation(local.btf, relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 16),
                                            kernel);
          }) == "CO-RE relocation byte_off at instruction 2 on type [6] STRUCT 'sock' access '0:0': the kernel's "
                "candidates disagree (16 and 24 at " +
                    kernel.label(other) + ")");
    // FIELD_EXISTS asks only whether it is there, which both say.
    CHECK(resolve_core_relocation(local.btf, relo(Local::kSock, "0:0", BPF_CORE_FIELD_EXISTS), kernel).value == 1);
}

// --- arrays ----------------------------------------------------------------------------------------------------------

namespace {

// struct arrs { int n; int a[4]; int flex[]; } locally; the kernel's with `pad` bytes before and a[nelems].
struct Arrays {
    Btf local;
    uint32_t root = 0;
    Arrays()
    {
        BtfBuilder b;
        const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
        const auto a = b.add_array(i, i, 4);
        const auto flex = b.add_array(i, i, 0);
        root = b.add_struct("arrs", 20, {{"n", i, 0}, {"a", a, 32}, {"flex", flex, 160}});
        local = parse_btf(b.build(), "local");
    }
};

Btf kernel_arrays(uint32_t nelems, bool flex_last = true)
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto l = b.add_int("long", 8, BTF_INT_SIGNED, 64);
    const auto a = b.add_array(i, i, nelems);
    const auto flex = b.add_array(i, i, 0);
    const uint32_t flex_at = 128 + nelems * 32;
    std::vector<BtfBuilder::Member> members{{"pad", l, 0}, {"n", i, 64}, {"a", a, 96}, {"flex", flex, flex_at}};
    if (!flex_last)
        members.push_back({"after", i, flex_at});
    b.add_struct("arrs", flex_at / 8 + (flex_last ? 0 : 4), members);
    return parse_btf(b.build(), "kernel");
}

} // namespace

TEST_CASE("an array element is found at its index in the kernel's array, within its bounds")
{
    const Arrays arrays;
    const auto r = relo(arrays.root, "0:1:2", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res = resolve_core_relocation(arrays.local, r, kernel_arrays(8));
    CHECK(res.local_value == 4 + 2 * 4);
    CHECK(res.value == 12 + 2 * 4);
    CHECK(patched(program({load(BPF_W, 12)}), 0, arrays.local, r, kernel_arrays(8))[0].off == 20);
    // The whole array: its size in each.
    CHECK(local_value(arrays.local, relo(arrays.root, "0:1", BPF_CORE_FIELD_BYTE_SIZE)) == 16);
    CHECK(target_value(arrays.local, relo(arrays.root, "0:1", BPF_CORE_FIELD_BYTE_SIZE), kernel_arrays(8)) == 32);
    // a[2] of a kernel array of two elements is not there.
    CHECK_FALSE(resolve_core_relocation(arrays.local, r, kernel_arrays(2)).exists);
    CHECK(target_value(arrays.local, relo(arrays.root, "0:1:1", BPF_CORE_FIELD_BYTE_OFFSET), kernel_arrays(2)) == 16);
}

TEST_CASE("a flexible array member takes any index, but only as the struct's last member")
{
    const Arrays arrays;
    const auto r = relo(arrays.root, "0:2:5", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(local_value(arrays.local, r) == 20 + 5 * 4);
    CHECK(target_value(arrays.local, r, kernel_arrays(4)) == 32 + 5 * 4);
    CHECK_FALSE(resolve_core_relocation(arrays.local, r, kernel_arrays(4, false)).exists);
}

TEST_CASE("the first accessor indexes an array of the root type, scaled by each BTF's size of it")
{
    // &socks[3]->sk_socket: "3:0".
    const Local local;
    const auto r = relo(Local::kSock, "3:0", BPF_CORE_FIELD_BYTE_OFFSET);
    const auto res = resolve_core_relocation(local.btf, r, kernel_moved());
    CHECK(res.local_value == 3 * 8);
    CHECK(res.value == 3 * 800 + 600);
    const auto whole = relo(Local::kSock, "2", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(target_value(local.btf, whole, kernel_moved()) == 1600);
    CHECK(patched(program({insn::add_imm(BPF_REG_1, 16)}), 0, local.btf, whole, kernel_moved())[0].imm == 1600);
}

// --- enum values ---------------------------------------------------------------------------------------------------

namespace {

// enum sk_state { TCP_SYN = 0, TCP_LISTEN = 1, TCP_GONE = 2 } locally.
struct LocalEnum {
    Btf btf;
    uint32_t root = 0;
    LocalEnum()
    {
        BtfBuilder b;
        root = b.add_enum("sk_state", 4, {{"TCP_SYN", 0}, {"TCP_LISTEN", 1}, {"TCP_GONE", 2}});
        btf = parse_btf(b.build(), "local");
    }
};

} // namespace

TEST_CASE("an enumerator's value is the kernel's, and ENUMVAL_EXISTS says whether it has it")
{
    const LocalEnum local;
    BtfBuilder b;
    const auto e = b.add_enum("sk_state", 4, {{"TCP_ESTABLISHED", 1}, {"TCP_SYN", 2}, {"TCP_LISTEN", 10}});
    const Btf kernel = parse_btf(b.build(), "kernel");

    const auto value = relo(local.root, "1", BPF_CORE_ENUMVAL_VALUE);
    const auto res = resolve_core_relocation(local.btf, value, kernel);
    CHECK(res.exists);
    CHECK(res.local_value == 1);
    CHECK(res.value == 10);
    CHECK(res.target_type == e);
    // clang emits enum values as ld_imm64, or as a mov where the value fits.
    auto wide = program({});
    const auto li = insn::ld_imm64(BPF_REG_0, 1);
    wide.insert(wide.begin(), li.begin(), li.end());
    const auto out = patched(wide, 0, local.btf, value, kernel);
    CHECK(out[0].code == (BPF_LD | BPF_IMM | BPF_DW));
    CHECK(out[0].imm == 10);
    CHECK(out[1].imm == 0);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, value, kernel)[0].imm == 10);

    const auto exists = relo(local.root, "2", BPF_CORE_ENUMVAL_EXISTS);
    const auto gone = resolve_core_relocation(local.btf, exists, kernel);
    CHECK_FALSE(gone.exists);
    CHECK(gone.local_value == 1);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, exists, kernel)[0].imm == 0);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, relo(local.root, "0", BPF_CORE_ENUMVAL_EXISTS),
                  kernel)[0]
              .imm == 1);
    // The value of an enumerator the kernel lacks poisons the instruction.
    CHECK(is_poison(patched(program({insn::mov_imm(BPF_REG_0, 2)}), 0, local.btf,
                            relo(local.root, "2", BPF_CORE_ENUMVAL_VALUE), kernel)[0]));
}

TEST_CASE("an enum the kernel made ENUM64 gives its 64-bit value to the ld_imm64")
{
    const LocalEnum local;
    BtfBuilder b;
    b.add_enum64("sk_state", 8, {{"TCP_LISTEN", int64_t{0x1'0000'0007}}});
    const Btf kernel = parse_btf(b.build(), "kernel");
    const auto value = relo(local.root, "1", BPF_CORE_ENUMVAL_VALUE);
    auto insns = program({});
    const auto li = insn::ld_imm64(BPF_REG_3, 1);
    insns.insert(insns.begin(), li.begin(), li.end());
    const auto out = patched(insns, 0, local.btf, value, kernel);
    CHECK(out[0].imm == 7);
    CHECK(out[1].imm == 1);
    CHECK(out[0].dst_reg == BPF_REG_3);
    // A mov's immediate cannot hold it.
    CHECK(error_of([&] { (void)patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, value, kernel); }) ==
          "program 'p': CO-RE relocation enumval_value at instruction 0: value 4294967303 does not fit an immediate");
}

TEST_CASE("a flavoured local enum and its flavoured enumerators match the kernel's by essential name")
{
    // enum cgroup_subsys_id___local { memory_cgrp_id___local = 123 }: libbpf's way of naming a kernel enumerator
    // whose value differs between kernels.
    BtfBuilder b;
    const auto e = b.add_enum("cgroup_subsys_id___local", 4, {{"memory_cgrp_id___local", 123}});
    const Btf local = parse_btf(b.build(), "local");
    BtfBuilder kb;
    kb.add_enum("cgroup_subsys_id", 4, {{"cpuset_cgrp_id", 0}, {"cpu_cgrp_id", 1}, {"memory_cgrp_id", 4}});
    const Btf kernel = parse_btf(kb.build(), "kernel");
    const auto value = relo(e, "0", BPF_CORE_ENUMVAL_VALUE);
    const auto res = resolve_core_relocation(local, value, kernel);
    CHECK(res.exists);
    CHECK(res.local_value == 123);
    CHECK(res.value == 4);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 123)}), 0, local, value, kernel)[0].imm == 4);
    CHECK(resolve_core_relocation(local, relo(e, "0", BPF_CORE_ENUMVAL_EXISTS), kernel).value == 1);
}

// --- types ---------------------------------------------------------------------------------------------------------

TEST_CASE("type relocations: the kernel's size and id of a type, and whether it has it")
{
    const Local local;
    const Btf kernel = kernel_moved();
    const uint32_t ksock = *kernel.find(BTF_KIND_STRUCT, "sock");

    const auto exists = relo(Local::kSock, "0", BPF_CORE_TYPE_EXISTS);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, exists, kernel)[0].imm == 1);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 1)}), 0, local.btf, exists, Btf{})[0].imm == 0);

    const auto size = relo(Local::kSock, "0", BPF_CORE_TYPE_SIZE);
    const auto sz = resolve_core_relocation(local.btf, size, kernel);
    CHECK(sz.local_value == 8);
    CHECK(sz.value == 800);
    CHECK(patched(program({insn::mov_imm(BPF_REG_0, 8)}), 0, local.btf, size, kernel)[0].imm == 800);

    const auto target_id = relo(Local::kSock, "0", BPF_CORE_TYPE_ID_TARGET);
    const auto tid = resolve_core_relocation(local.btf, target_id, kernel);
    CHECK(tid.value == ksock);
    CHECK(tid.target_type == ksock);
    auto insns = program({});
    const auto li = insn::ld_imm64(BPF_REG_1, Local::kSock);
    insns.insert(insns.begin(), li.begin(), li.end());
    const auto out = patched(insns, 0, local.btf, target_id, kernel);
    CHECK(out[0].imm == static_cast<int32_t>(ksock));
    CHECK(out[1].imm == 0);

    // The local id needs no kernel at all.
    const auto local_id = resolve_core_relocation(local.btf, relo(Local::kSocket, "0", BPF_CORE_TYPE_ID_LOCAL), Btf{});
    CHECK(local_id.exists);
    CHECK(local_id.value == Local::kSocket);
}

TEST_CASE("a typedef'd root type is matched by the typedef's name, as libbpf matches it")
{
    // bpf_core_type_size(u32): the kernel's u32, not its unsigned int.
    BtfBuilder lb;
    const auto li32 = lb.add_int("unsigned int", 4, 0, 32);
    const auto td = lb.add_typedef("u32", li32);
    const Btf tlocal = parse_btf(lb.build(), "local");
    BtfBuilder kb;
    kb.add_typedef("u32", kb.add_int("unsigned long", 8, 0, 64));
    const Btf tkernel = parse_btf(kb.build(), "kernel");
    const auto tsize = resolve_core_relocation(tlocal, relo(td, "0", BPF_CORE_TYPE_SIZE), tkernel);
    CHECK(tsize.local_value == 4);
    CHECK(tsize.value == 8);

    // typedef struct { int x; int y; } pair_t: the struct has no name, the typedef does.
    BtfBuilder pb;
    const auto pi = pb.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto pair = pb.add_typedef("pair_t", pb.add_struct("", 8, {{"x", pi, 0}, {"y", pi, 32}}));
    const Btf plocal = parse_btf(pb.build(), "local");
    BtfBuilder pk;
    const auto ki = pk.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto kl = pk.add_int("long", 8, BTF_INT_SIGNED, 64);
    pk.add_struct("", 4, {{"y", ki, 0}}); // another anonymous struct with a y: no candidate, it has no name
    const auto kpair = pk.add_typedef("pair_t", pk.add_struct("", 16, {{"pad", kl, 0}, {"y", ki, 64}}));
    const Btf pkernel = parse_btf(pk.build(), "kernel");
    const auto y = resolve_core_relocation(plocal, relo(pair, "0:1", BPF_CORE_FIELD_BYTE_OFFSET), pkernel);
    CHECK(y.exists);
    CHECK(y.local_value == 4);
    CHECK(y.value == 8);
    CHECK(y.target_type == kpair);
    CHECK(resolve_core_relocation(plocal, relo(pair, "0", BPF_CORE_TYPE_EXISTS), pkernel).exists);
    CHECK(resolve_core_relocation(plocal, relo(pair, "0", BPF_CORE_TYPE_SIZE), pkernel).value == 16);
}

TEST_CASE("a type the kernel lacks has size 0 and kernel id 0, not a poisoned instruction")
{
    // u32 id = bpf_core_type_id_kernel(struct sock); if (id) ...: libbpf's bpf_core_calc_type_relo gives 0.
    const Local local;
    BtfBuilder b;
    b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const Btf kernel = parse_btf(b.build(), "kernel");
    const auto size = relo(Local::kSock, "0", BPF_CORE_TYPE_SIZE);
    CHECK_FALSE(resolve_core_relocation(local.btf, size, kernel).exists);
    const auto out = patched(program({insn::mov_imm(BPF_REG_0, 8)}), 0, local.btf, size, kernel);
    CHECK(out[0].code == (BPF_ALU64 | BPF_MOV | BPF_K));
    CHECK(out[0].imm == 0);
    auto insns = program({});
    const auto li = insn::ld_imm64(BPF_REG_1, Local::kSock);
    insns.insert(insns.begin(), li.begin(), li.end());
    const auto id = patched(insns, 0, local.btf, relo(Local::kSock, "0", BPF_CORE_TYPE_ID_TARGET), kernel);
    CHECK(id[0].code == (BPF_LD | BPF_IMM | BPF_DW));
    CHECK(id[0].imm == 0);
    CHECK(id[1].imm == 0);
}

// --- refusals: the local spec --------------------------------------------------------------------------------------

TEST_CASE("a malformed local access string is refused, naming the relocation and what is wrong")
{
    const Local local;
    const Btf kernel = kernel_moved();
    const auto refusal = [&](uint32_t root, const std::string& access, uint32_t kind) {
        return error_of([&] { (void)resolve_core_relocation(local.btf, relo(root, access, kind, 24), kernel); });
    };
    CHECK(refusal(Local::kSock, "", BPF_CORE_FIELD_BYTE_OFFSET) ==
          "CO-RE relocation byte_off at instruction 3 on type [6] STRUCT 'sock' access '': empty access string");
    CHECK(refusal(Local::kSock, "0:5", BPF_CORE_FIELD_BYTE_OFFSET) ==
          "CO-RE relocation byte_off at instruction 3 on type [6] STRUCT 'sock' access '0:5': member #5 of type [6] "
          "STRUCT 'sock', which has 1");
    CHECK(refusal(Local::kSock, "0:0:0", BPF_CORE_FIELD_BYTE_OFFSET) ==
          "CO-RE relocation byte_off at instruction 3 on type [6] STRUCT 'sock' access '0:0:0': accessor #2 goes into "
          "type [7] PTR (anon), which is no struct, union or array");
    CHECK(refusal(Local::kSock, "0:0", BPF_CORE_TYPE_SIZE) ==
          "CO-RE relocation type_size at instruction 3 on type [6] STRUCT 'sock' access '0:0': a type relocation's "
          "access string must be '0'");
    CHECK(refusal(Local::kSock, "0", BPF_CORE_ENUMVAL_VALUE) ==
          "CO-RE relocation enumval_value at instruction 3 on type [6] STRUCT 'sock' access '0': not an enumerator of "
          "an enum");
    CHECK(refusal(Local::kSock, "0", 13) ==
          "CO-RE relocation unknown at instruction 3 on type [6] STRUCT 'sock' access '0': kind 13 is not supported");

    const Arrays arrays;
    CHECK(error_of([&] {
              (void)resolve_core_relocation(arrays.local, relo(arrays.root, "0:1:4", BPF_CORE_FIELD_BYTE_OFFSET),
                                            kernel);
          }) == "CO-RE relocation byte_off at instruction 0 on type [4] STRUCT 'arrs' access '0:1:4': element 4 of "
                "type [2] ARRAY (anon), which has 4");
    const LocalEnum enums;
    CHECK(error_of([&] {
              (void)resolve_core_relocation(enums.btf, relo(enums.root, "3", BPF_CORE_ENUMVAL_VALUE), kernel);
          }) == "CO-RE relocation enumval_value at instruction 0 on type [1] ENUM 'sk_state' access '3': not an "
                "enumerator of an enum");
}

TEST_CASE("an anonymous root type has no name to look for in the kernel, except for its local id")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto anon = b.add_struct("", 4, {{"x", i, 0}});
    const Btf local = parse_btf(b.build(), "local");
    CHECK(error_of([&] {
              (void)resolve_core_relocation(local, relo(anon, "0:0", BPF_CORE_FIELD_BYTE_OFFSET), kernel_moved());
          }) ==
          "CO-RE relocation byte_off at instruction 0 on type [2] STRUCT (anon) access '0:0': the root type has no "
          "name to match in the kernel's BTF");
    CHECK(resolve_core_relocation(local, relo(anon, "0", BPF_CORE_TYPE_ID_LOCAL), kernel_moved()).value == anon);
}

// --- refusals: the instruction -------------------------------------------------------------------------------------

TEST_CASE("an instruction that does not hold the value clang compiled in is refused")
{
    const Local local;
    const Btf kernel = kernel_moved();
    const auto off = relo(Local::kSocket, "0:1", BPF_CORE_FIELD_BYTE_OFFSET); // local 8
    CHECK(error_of([&] { (void)patched(program({load(BPF_DW, 4)}), 0, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 0: offset 4, the object's BTF says 8");
    CHECK(error_of([&] { (void)patched(program({insn::add_imm(BPF_REG_1, 7)}), 0, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 0: holds 7, the object's BTF says 8");
    auto wide = program({});
    const auto li = insn::ld_imm64(BPF_REG_1, 9);
    wide.insert(wide.begin(), li.begin(), li.end());
    CHECK(error_of([&] { (void)patched(wide, 0, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 0: holds 9, the object's BTF says 8");
    CHECK(error_of([&] {
              (void)patched(program({insn::raw(BPF_ALU64 | BPF_ADD | BPF_X, 1, 2, 0, 8)}), 0, local.btf, off, kernel);
          }) == "program 'p': CO-RE relocation byte_off at instruction 0: an ALU instruction with a register operand");
    CHECK(error_of([&] {
              (void)patched(program({insn::raw(BPF_JMP | BPF_JA, 0, 0, 8, 0)}), 0, local.btf, off, kernel);
          }) == "program 'p': CO-RE relocation byte_off at instruction 0: instruction code 5 takes no relocation");
    CHECK(error_of([&] { (void)patched(program({}), 3, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 3: outside the program (1 instructions)");
    CHECK(error_of([&] { (void)patched({insn::ld_imm64(BPF_REG_1, 8)[0]}, 0, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 0: a 64-bit immediate load cut off by the "
          "program's end");
}

TEST_CASE("a kernel offset past what a load's 16-bit offset holds is refused, and a size past an immediate")
{
    BtfBuilder b;
    const auto socket_ptr = b.add_ptr(b.add_struct("socket", 4, {{"x", b.add_int("int", 4, BTF_INT_SIGNED, 32), 0}}));
    b.add_struct("sock", 40008, {{"sk_socket", socket_ptr, 40000 * 8}});
    const Btf kernel = parse_btf(b.build(), "kernel");
    const Local local;
    const auto off = relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(error_of([&] { (void)patched(program({load(BPF_DW, 0)}), 0, local.btf, off, kernel); }) ==
          "program 'p': CO-RE relocation byte_off at instruction 0: offset 40000 does not fit a load or store");
    // An ALU immediate takes it.
    CHECK(patched(program({insn::add_imm(BPF_REG_1, 0)}), 0, local.btf, off, kernel)[0].imm == 40000);

    BtfBuilder big;
    big.add_struct("sock", 0x90000000U, {});
    const auto size = relo(Local::kSock, "0", BPF_CORE_TYPE_SIZE);
    CHECK(error_of([&] {
              (void)patched(program({insn::mov_imm(BPF_REG_0, 8)}), 0, local.btf, size, parse_btf(big.build()));
          }) == "program 'p': CO-RE relocation type_size at instruction 0: value 2415919104 does not fit an immediate");
}

TEST_CASE("an unresolved ld_imm64 is poisoned in its first slot and its second becomes a no-op")
{
    const LocalEnum local;
    auto insns = program({});
    const auto li = insn::ld_imm64(BPF_REG_0, 2);
    insns.insert(insns.begin(), li.begin(), li.end());
    const auto out = patched(insns, 0, local.btf, relo(local.root, "2", BPF_CORE_ENUMVAL_VALUE), Btf{});
    CHECK(is_poison(out[0]));
    CHECK(out[1].code == (BPF_JMP | BPF_JA));
    CHECK(out[1].off == 0);
    CHECK(out[2].code == (BPF_JMP | BPF_EXIT));
}

// --- a program's relocations ---------------------------------------------------------------------------------------

TEST_CASE("apply_core_relocations patches the records inside the program only, counting resolved and poisoned")
{
    const Local local;
    BtfBuilder b;
    const auto uint = b.add_int("unsigned int", 4, 0, 32);
    b.add_struct("file", 16, {{"f_mode", uint, 0}, {"f_flags", uint, 96}});
    b.add_struct("sock", 8, {});
    const Btf kernel = parse_btf(b.build(), "kernel");
    // The program starts at byte 80 of its section: instructions 10.. of the section.
    auto insns = program({load(BPF_W, 0), load(BPF_DW, 0), insn::mov_imm(BPF_REG_0, 1)});
    const std::vector<BtfCoreRelo> relos{
        relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 80),         // insn 0: f_flags at 12
        relo(Local::kSock, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 88),         // insn 1: no sk_socket
        relo(Local::kSock, "0:0", BPF_CORE_FIELD_EXISTS, 96),              // insn 2: 0
        relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 72),         // another program's
        relo(Local::kFile, "0:0", BPF_CORE_FIELD_BYTE_OFFSET, 80 + 4 * 8), // past the end
    };
    const auto stats = apply_core_relocations(insns, relos, 80, local.btf, kernel, "p");
    CHECK(stats.resolved == 1);
    CHECK(stats.poisoned == 2); // the missing field's load, and the exists check that says 0
    CHECK(insns[0].off == 12);
    CHECK(is_poison(insns[1]));
    CHECK(insns[2].imm == 0);
    CHECK(insns[3].code == (BPF_JMP | BPF_EXIT));
}

// --- the tracing object against this kernel ------------------------------------------------------------------------

namespace {

constexpr const char* kVmlinux = "/sys/kernel/btf/vmlinux";

} // namespace

TEST_CASE("the tracing object's CO-RE relocations resolve against this kernel's BTF to its own offsets")
{
    const char* path = std::getenv("SOCKREDIR_TRACE_TP_OBJECT");
    REQUIRE_MESSAGE((path != nullptr && *path != '\0'), "SOCKREDIR_TRACE_TP_OBJECT is not set (meson test sets it)");
    const auto spec = ebpf::open_object(base::read_file_bytes(path));
    REQUIRE(spec.btf.has_value());
    const auto& p = spec.programs.at("trace_recv_tp");
    REQUIRE(p.core_relos.size() >= 3); // sk->sk_socket, so->file, file->f_flags

    if (!std::ifstream(kVmlinux, std::ios::binary))
        SKIP_TEST_CASE(std::string(kVmlinux) + " is not readable: this kernel has no BTF");
    const Btf kernel = parse_btf(base::read_file_bytes(kVmlinux), kVmlinux);
    const Btf& local = *spec.btf;
    auto insns = p.insns;
    const auto stats = apply_core_relocations(insns, p.core_relos, 0, local, kernel, p.name);
    CHECK(stats.resolved == p.core_relos.size());
    CHECK(stats.poisoned == 0);
    for (const auto& r : p.core_relos) {
        CAPTURE(r.access);
        CAPTURE(local.label(r.type_id));
        REQUIRE(r.kind == BPF_CORE_FIELD_BYTE_OFFSET);
        // The kernel's answer, looked up by name member by member.
        uint32_t lid = local.resolve(r.type_id);
        const auto root = kernel.find(BTF_KIND_STRUCT, local.name(lid));
        REQUIRE(root.has_value());
        uint32_t kid = *root;
        uint64_t expected = uint64_t{r.accessors[0]} * kernel.type_size(kid);
        for (size_t i = 1; i < r.accessors.size(); ++i) {
            const BtfType& lt = local.type(lid);
            const auto& lm = lt.members.at(r.accessors[i]);
            const auto m = kernel.find_member(kid, local.string(lm.name_off));
            REQUIRE(m.has_value());
            expected += m->bit_offset / 8;
            kid = kernel.resolve(kernel.type(m->parent).members[m->index].type);
            lid = local.resolve(lm.type);
        }
        const bpf_insn& patched_insn = insns.at(r.insn_off / 8);
        const bpf_insn& original = p.insns.at(r.insn_off / 8);
        if (BPF_CLASS(patched_insn.code) == BPF_LDX) {
            CHECK(static_cast<uint64_t>(patched_insn.off) == expected);
            CHECK(patched_insn.code == original.code); // the kernel's fields are as wide as the object's
        } else {
            CHECK(static_cast<uint64_t>(patched_insn.imm) == expected);
        }
    }
}
