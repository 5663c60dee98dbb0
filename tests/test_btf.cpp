// Unit tests of elf/btf: the real objects' BTF and .BTF.ext, vmlinux, hand-built blobs, every refusal with its
// message, lookups, encode round trips, DATASEC fix-ups, sanitizing rules and BTF-defined map definitions.
#include <doctest/doctest.h>

#include <elf.h>
#include <linux/bpf.h>
#include <linux/btf.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "elf/btf.hpp"
#include "elf/reader.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "tests/btf_builder.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::elf;
using namespace sockredir::test;

namespace {

// An object meson built; the variable is set by meson.build's test_env.
Bytes env_object(const char* var)
{
    const char* path = std::getenv(var);
    REQUIRE_MESSAGE((path != nullptr && *path != '\0'), std::string(var) << " is not set (meson test sets it)");
    return base::read_file_bytes(path);
}

struct Object {
    Bytes file;
    ElfFile elf;
    std::span<const std::byte> btf_bytes, ext_bytes;
};

Object read_object(const char* var)
{
    Object o;
    o.file = env_object(var);
    o.elf = elf::read(o.file);
    const auto* btf = o.elf.find_section(".BTF");
    const auto* ext = o.elf.find_section(".BTF.ext");
    REQUIRE(btf != nullptr);
    REQUIRE(ext != nullptr);
    o.btf_bytes = btf->data;
    o.ext_bytes = ext->data;
    return o;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// The message parse_btf refuses `bytes` with, or "parsed".
std::string refusal(const Bytes& bytes)
{
    try {
        (void)parse_btf(bytes);
        return "parsed";
    } catch (const Error& e) {
        return e.what();
    }
}

std::string refusal_ext(const Bytes& bytes, const Btf& btf)
{
    try {
        (void)parse_btf_ext(bytes, btf);
        return "parsed";
    } catch (const Error& e) {
        return e.what();
    }
}

template <typename F> std::string error_of(F&& f)
{
    try {
        f();
        return "no error";
    } catch (const Error& e) {
        return e.what();
    }
}

uint32_t find_id(const Btf& btf, uint32_t kind, std::string_view name)
{
    const auto id = btf.find(kind, name);
    REQUIRE_MESSAGE(id.has_value(), btf_kind_name(kind) << " '" << name << "' is not in the BTF");
    return *id;
}

// A little BTF with an int, so that most malformed cases need one type of their own.
struct Small {
    BtfBuilder b;
    uint32_t int_id = 0;
    Small() { int_id = b.add_int("int", 4, BTF_INT_SIGNED, 32); }
};

bool vmlinux_readable()
{
    std::ifstream in("/sys/kernel/btf/vmlinux", std::ios::binary);
    return static_cast<bool>(in);
}

// Outside CI a kernel without BTF skips the vmlinux tests; under CI=true they run, and fail.
bool skip_vmlinux()
{
    const char* ci = std::getenv("CI");
    return !vmlinux_readable() && !(ci != nullptr && std::string(ci) == "true");
}

std::string hex(uint32_t v)
{
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", v);
    return buf;
}

double seconds_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlowdown = 10.0; // ASan + UBSan at -O1
#else
constexpr double kSlowdown = 1.0;
#endif

} // namespace

// --- the project's BPF object ----------------------------------------------------------------------------------

TEST_CASE("the BTF of the project's BPF object parses and encodes back byte for byte")
{
    const auto o = read_object("SOCKREDIR_BPF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    CHECK(btf.types().size() > 10);
    CHECK(same_bytes(encode(btf), o.btf_bytes));
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("the project's programs are global FUNCs whose prototypes take the context pointer")
{
    const auto o = read_object("SOCKREDIR_BPF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    for (const auto& names :
         {std::pair{SOCKREDIR_PROG_SOCKOPS, "bpf_sock_ops"}, std::pair{SOCKREDIR_PROG_MSG, "sk_msg_md"}}) {
        const std::string prog = names.first, ctx = names.second;
        CAPTURE(prog);
        const auto func = find_id(btf, BTF_KIND_FUNC, prog);
        CHECK(btf.type(func).vlen == BTF_FUNC_GLOBAL);
        const auto& proto = btf.type(btf.type(func).size_or_type);
        REQUIRE(proto.kind == BTF_KIND_FUNC_PROTO);
        REQUIRE(proto.params.size() == 1);
        const auto& ptr = btf.type(proto.params[0].type);
        REQUIRE(ptr.kind == BTF_KIND_PTR);
        CHECK(btf.name(ptr.size_or_type) == ctx);
        CHECK(btf.type(btf.resolve(proto.size_or_type)).kind == BTF_KIND_INT);
    }
}

TEST_CASE("the project's .BTF.ext gives each program section its func_info and line_info")
{
    const auto o = read_object("SOCKREDIR_BPF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    const auto ext = parse_btf_ext(o.ext_bytes, btf);
    CHECK(ext.func_info_rec_size == sizeof(bpf_func_info));
    CHECK(ext.line_info_rec_size == sizeof(bpf_line_info));
    // The kernel structures the programs read (bpf/kernel.h, bpf/psock.h) are CO-RE relocated in every program
    // section.
    for (const char* section : {"sockops", "sk_msg", "tp_btf/sock_recv_length", "fexit/sock_recvmsg", "iter/sockmap",
                                "tc"}) {
        CAPTURE(section);
        CHECK_FALSE(ext.core_relos_of(section).empty());
    }
    for (const auto& names : {std::pair{"sockops", SOCKREDIR_PROG_SOCKOPS}, std::pair{"sk_msg", SOCKREDIR_PROG_MSG},
                              std::pair{"iter/sockmap", SOCKREDIR_PROG_EVICT}, std::pair{"tc", SOCKREDIR_PROG_UNMAP}}) {
        const std::string section = names.first, prog = names.second;
        CAPTURE(section);
        const auto funcs = ext.func_info_of(section);
        REQUIRE(funcs.size() == 1);
        CHECK(funcs[0].insn_off == 0);
        CHECK(btf.name(funcs[0].type_id) == prog);
        const auto lines = ext.line_info_of(section);
        REQUIRE_FALSE(lines.empty());
        CHECK(lines[0].insn_off == 0);
        CHECK(btf.string(lines[0].file_name_off).find("sockredir.bpf.c") != std::string_view::npos);
        CHECK(BPF_LINE_INFO_LINE_NUM(lines[0].line_col) > 0);
        const auto section_size = o.elf.find_section(section)->size;
        const auto kernel = program_line_info(ext, section, 0, section_size);
        REQUIRE(kernel.size() == lines.size());
        CHECK(kernel.back().insn_off == lines.back().insn_off / 8);
    }
}

// --- the BTF test object (tests/data/btf_maps.bpf.c) -------------------------------------------------------------

TEST_CASE("the BTF test object's BTF encodes back byte for byte")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    CHECK(same_bytes(encode(btf), o.btf_bytes));
}

TEST_CASE("clang leaves DATASEC sizes and var offsets 0, and the fix-up takes them from the ELF file")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    auto btf = parse_btf(o.btf_bytes);
    const auto data = find_id(btf, BTF_KIND_DATASEC, ".data");
    CHECK(btf.type(data).size_or_type == 0);
    for (const auto& v : btf.type(data).vars)
        CHECK(v.offset == 0);
    fixup_datasecs(btf, o.elf);
    CHECK(btf.type(data).size_or_type == o.elf.find_section(".data")->size);
    std::map<std::string, uint64_t> symbol_value;
    for (const auto& s : o.elf.symbols)
        symbol_value[s.name] = s.value;
    for (const char* sec : {".data", ".bss", ".rodata", ".maps"}) {
        CAPTURE(sec);
        const auto& t = btf.type(find_id(btf, BTF_KIND_DATASEC, sec));
        CHECK(t.size_or_type == o.elf.find_section(sec)->size);
        REQUIRE_FALSE(t.vars.empty());
        for (size_t i = 0; i < t.vars.size(); ++i) {
            CHECK(t.vars[i].offset == symbol_value.at(std::string(btf.name(t.vars[i].type))));
            if (i > 0)
                CHECK(t.vars[i - 1].offset <= t.vars[i].offset);
        }
    }
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("the BTF test object's .maps gives each map definition as libbpf reads it")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    const auto maps = parse_btf_maps(btf);
    REQUIRE(maps.size() == 3);

    CHECK(maps[0].name == "flows");
    CHECK(maps[0].type == BPF_MAP_TYPE_HASH);
    CHECK(maps[0].max_entries == 1024);
    CHECK(maps[0].key_size == 8);
    CHECK(maps[0].value_size == 16);
    CHECK(maps[0].pinning == kBtfPinByName);
    CHECK(maps[0].key_type_id == find_id(btf, BTF_KIND_STRUCT, "flow_key"));
    CHECK(maps[0].value_type_id == find_id(btf, BTF_KIND_STRUCT, "flow_value"));

    CHECK(maps[1].name == "stats");
    CHECK(maps[1].type == BPF_MAP_TYPE_ARRAY);
    CHECK(maps[1].key_size == 4);
    CHECK(maps[1].value_size == 8);
    CHECK(maps[1].map_flags == BPF_F_RDONLY_PROG);
    CHECK(maps[1].key_type_id == 0);
    CHECK(maps[1].pinning == kBtfPinNone);

    CHECK(maps[2].name == "outer");
    CHECK(maps[2].type == BPF_MAP_TYPE_ARRAY_OF_MAPS);
    CHECK(maps[2].value_size == 4);
    CHECK(maps[2].has_values);
    REQUIRE(maps[2].inner.size() == 1);
    CHECK(maps[2].inner[0].name == "outer.inner");
    CHECK(maps[2].inner[0].type == BPF_MAP_TYPE_ARRAY);
    CHECK(maps[2].inner[0].max_entries == 1);
    CHECK(maps[2].inner[0].key_size == 4);
    CHECK(maps[2].inner[0].value_size == 4);

    const auto flows = btf.type(find_id(btf, BTF_KIND_DATASEC, ".maps")).vars.at(0).type;
    CHECK(parse_btf_map_def(btf, flows).max_entries == 1024);
}

TEST_CASE("the BTF test object describes bitfields, an enum, a float, a decl tag and a type tag")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);

    const auto value = find_id(btf, BTF_KIND_STRUCT, "flow_value");
    CHECK(btf.type(value).kflag); // bitfields: the member offsets hold their sizes
    const auto window = btf.find_member(value, "window");
    REQUIRE(window.has_value());
    CHECK(window->bit_offset == 68);
    CHECK(btf.type(value).member_bitfield_size(window->index) == 20);
    CHECK(btf.type_size(value) == 16);

    const auto state = find_id(btf, BTF_KIND_ENUM, "flow_state");
    const auto& values = btf.type(state).enum_values;
    REQUIRE(values.size() == 3);
    CHECK(btf.string(values[1].name_off) == "FLOW_OPEN");
    CHECK(values[1].value == 2);
    CHECK(values[2].value == 0xffffffffu); // -1 as clang 14 writes it: no signedness kflag

    CHECK(btf.type_size(find_id(btf, BTF_KIND_FLOAT, "float")) == 4);

    const auto tag = find_id(btf, BTF_KIND_DECL_TAG, "btf_test_tag");
    CHECK(btf.type(tag).component_idx == -1);
    CHECK(btf.name(btf.type(tag).size_or_type) == "tagged");

    const auto user = find_id(btf, BTF_KIND_TYPE_TAG, "user");
    CHECK(btf.resolve(user) == find_id(btf, BTF_KIND_INT, "int"));
}

TEST_CASE("the BTF test object's CO-RE relocations name the local struct, the kind and the access string")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    const auto btf = parse_btf(o.btf_bytes);
    const auto ext = parse_btf_ext(o.ext_bytes, btf);
    CHECK(ext.core_relo_rec_size == sizeof(bpf_core_relo));
    const auto relos = ext.core_relos_of("socket");
    REQUIRE(relos.size() == 5);
    const auto thing = find_id(btf, BTF_KIND_STRUCT, "core_thing");
    const std::vector<std::tuple<uint32_t, uint32_t, std::string, std::vector<uint32_t>>> expected = {
        {thing, BPF_CORE_FIELD_BYTE_OFFSET, "0:1", {0, 1}},
        {thing, BPF_CORE_FIELD_EXISTS, "0:2", {0, 2}},
        {thing, BPF_CORE_TYPE_ID_LOCAL, "0", {0}},
        {thing, BPF_CORE_TYPE_EXISTS, "0", {0}},
        {find_id(btf, BTF_KIND_ENUM, "flow_state"), BPF_CORE_ENUMVAL_EXISTS, "1", {1}},
    };
    for (size_t i = 0; i < relos.size(); ++i) {
        CAPTURE(i);
        CHECK(relos[i].insn_off % 8 == 0);
        CHECK(relos[i].type_id == std::get<0>(expected[i]));
        CHECK(relos[i].kind == std::get<1>(expected[i]));
        CHECK(relos[i].access == std::get<2>(expected[i]));
        CHECK(relos[i].accessors == std::get<3>(expected[i]));
    }
    // The global subprogram has its own func_info, in .text.
    REQUIRE(ext.func_info_of(".text").size() == 1);
    CHECK(btf.name(ext.func_info_of(".text")[0].type_id) == "scale");
    CHECK(ext.func_info_of("socket").size() == 1);
}

TEST_CASE("sanitizing the test object for a kernel without BTF extensions leaves BTF that parses again")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    auto btf = parse_btf(o.btf_bytes);
    fixup_datasecs(btf, o.elf);
    auto old = btf;
    sanitize(old, BtfKernelSupport{false, false, false, false, false, false, false, false});
    for (const auto& t : old.types()) {
        CHECK(t.kind != BTF_KIND_VAR);
        CHECK(t.kind != BTF_KIND_DATASEC);
        CHECK(t.kind != BTF_KIND_FUNC);
        CHECK(t.kind != BTF_KIND_FUNC_PROTO);
        CHECK(t.kind != BTF_KIND_FLOAT);
        CHECK(t.kind != BTF_KIND_DECL_TAG);
        CHECK(t.kind != BTF_KIND_TYPE_TAG);
    }
    CHECK(old.types().size() == btf.types().size()); // every id kept
    CHECK(old.find(BTF_KIND_STRUCT, "_data").has_value());
    CHECK(parse_btf(encode(old)) == old);
    auto current = btf;
    sanitize(current, BtfKernelSupport{});
    CHECK(current == btf);
}

// --- vmlinux -----------------------------------------------------------------------------------------------------

TEST_CASE("the running kernel's BTF parses in well under a second and encodes back byte for byte" *
          doctest::skip(skip_vmlinux()))
{
    const auto bytes = base::read_file_bytes("/sys/kernel/btf/vmlinux");
    const auto start = std::chrono::steady_clock::now();
    const auto btf = parse_btf(bytes, "vmlinux");
    CHECK(seconds_since(start) < 1.0 * kSlowdown);
    CHECK(btf.types().size() > 10000);
    CHECK(same_bytes(encode(btf), bytes));
}

TEST_CASE("vmlinux types are found by kind and name, sized and searched for members" * doctest::skip(skip_vmlinux()))
{
    const auto btf = parse_btf(base::read_file_bytes("/sys/kernel/btf/vmlinux"), "vmlinux");
    const auto start = std::chrono::steady_clock::now();
    const auto task = find_id(btf, BTF_KIND_STRUCT, "task_struct");
    const auto sock = find_id(btf, BTF_KIND_STRUCT, "sock");
    CHECK(seconds_since(start) < 1.0 * kSlowdown); // the first lookup builds the index
    CHECK(btf.type_size(task) == btf.type(task).size_or_type);
    const auto pid = btf.find_member(task, "pid");
    REQUIRE(pid.has_value());
    CHECK(pid->bit_offset % 8 == 0);
    // struct sock's skc_family lies in the anonymous unions of struct sock_common __sk_common: found through them.
    CHECK(btf.find_member(sock, "__sk_common").has_value());
    CHECK_FALSE(btf.find_member(sock, "no_such_member").has_value());
    CHECK(btf.type_size(find_id(btf, BTF_KIND_TYPEDEF, "u64")) == 8);
    // Every sized type's size is computed in bounded time (a loop would never end). FUNCs, prototypes, FWDs and
    // tags (of FUNCs) are left out: their refusals are exceptions, whose cost says nothing about the walk.
    const auto all = std::chrono::steady_clock::now();
    size_t sized = 0;
    for (uint32_t id = 1; id < btf.types().size(); ++id) {
        const auto kind = btf.type(btf.resolve(id)).kind;
        if (kind == BTF_KIND_FUNC || kind == BTF_KIND_FUNC_PROTO || kind == BTF_KIND_FWD || kind == BTF_KIND_UNKN ||
            kind == BTF_KIND_DECL_TAG)
            continue;
        (void)btf.type_size(id);
        ++sized;
    }
    CHECK(sized > 1000);
    CHECK(seconds_since(all) < 5.0 * kSlowdown);
}

// --- hand-built blobs: what parses -------------------------------------------------------------------------------

TEST_CASE("every kind Linux 6.18 accepts parses with its fields and encodes back byte for byte")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);                                // 1
    const auto p = b.add_ptr(i);                                                           // 2
    const auto a = b.add_array(i, i, 7);                                                   // 3
    const auto s = b.add_struct("s", 12, {{"x", i, 0}, {"bits", i, 5u << 24 | 32}}, true); // 4
    const auto u = b.add_union("u", 4, {{"y", i, 0}});                                     // 5
    const auto e = b.add_enum("e", 4, {{"A", -1}, {"B", 2}}, true);                        // 6
    const auto f = b.add_fwd("later", true);                                               // 7
    const auto td = b.add_typedef("td", i);                                                // 8
    const auto vo = b.add_volatile(i);                                                     // 9
    const auto co = b.add_const(vo);                                                       // 10
    const auto re = b.add_restrict(p);                                                     // 11
    const auto pr = b.add_func_proto(i, {{"a", i}, {"", 0}});                              // 12, variadic
    const auto fn = b.add_func("fn", pr, BTF_FUNC_STATIC);                                 // 13
    const auto v = b.add_var("v", i, BTF_VAR_STATIC);                                      // 14
    const auto ds = b.add_datasec(".data", 4, {{v, 0, 4}});                                // 15
    const auto fl = b.add_float("double", 8);                                              // 16
    const auto dt = b.add_decl_tag("tag", s, 1);                                           // 17
    const auto tt = b.add_type_tag("user", i, true);                                       // 18
    const auto e64 = b.add_enum64("e64", 8, {{"BIG", int64_t{1} << 40}});                  // 19
    const auto bytes = b.build();
    const auto btf = parse_btf(bytes);
    REQUIRE(btf.types().size() == 20);
    CHECK(btf.types()[0].kind == BTF_KIND_UNKN);

    CHECK(btf.type(i).int_encoding() == BTF_INT_SIGNED);
    CHECK(btf.type(i).int_bits() == 32);
    CHECK(btf.type(p).size_or_type == i);
    CHECK(btf.type(a).array == BtfArray{i, i, 7});
    CHECK(btf.type(s).kflag);
    CHECK(btf.type(s).member_bit_offset(1) == 32);
    CHECK(btf.type(s).member_bitfield_size(1) == 5);
    CHECK(btf.type(u).kind == BTF_KIND_UNION);
    CHECK(btf.type(e).kflag);
    CHECK(btf.type(e).enum_values[0].value == 0xffffffffu);
    CHECK(btf.type(f).kflag);
    CHECK(btf.name(td) == "td");
    CHECK(btf.type(co).size_or_type == vo);
    CHECK(btf.type(re).kind == BTF_KIND_RESTRICT);
    REQUIRE(btf.type(pr).params.size() == 2);
    CHECK(btf.type(pr).params[1].type == 0);
    CHECK(btf.type(fn).vlen == BTF_FUNC_STATIC);
    CHECK(btf.type(v).linkage == BTF_VAR_STATIC);
    CHECK(btf.type(ds).vars == std::vector<BtfVarSecinfo>{{v, 0, 4}});
    CHECK(btf.type(fl).size_or_type == 8);
    CHECK(btf.type(dt).component_idx == 1);
    CHECK(btf.type(tt).kflag);
    CHECK(btf.type(e64).enum_values[0].value == uint64_t{1} << 40);
    CHECK(same_bytes(encode(btf), bytes));
}

TEST_CASE("a BTF with no types but void parses")
{
    const auto btf = parse_btf(BtfBuilder{}.build());
    CHECK(btf.types().size() == 1);
    CHECK(btf.strings() == std::string(1, '\0'));
}

TEST_CASE("a longer header whose further bytes are zero, strings before types and a gap parse to the same model")
{
    Small s;
    s.b.add_ptr(s.int_id);
    const auto canonical = parse_btf(s.b.build());
    // [header 32 bytes][strings][4 bytes gap][types]
    const auto types = s.b.types_bytes();
    const auto& strings = s.b.strings;
    btf_header h = s.b.header();
    h.hdr_len = 32;
    h.str_off = 0;
    h.type_off = static_cast<uint32_t>((strings.size() + 3) / 4 * 4 + 4);
    Bytes bytes(h.hdr_len + h.type_off + types.size());
    std::memcpy(bytes.data(), &h, sizeof h);
    std::memcpy(bytes.data() + h.hdr_len, strings.data(), strings.size());
    std::memcpy(bytes.data() + h.hdr_len + h.type_off, types.data(), types.size());
    const auto btf = parse_btf(bytes);
    CHECK(btf == canonical);
    CHECK(same_bytes(encode(btf), s.b.build())); // encode writes clang's layout
}

TEST_CASE("types may name types that come after them")
{
    BtfBuilder b;
    const auto p = b.add_ptr(2);
    b.add_struct("node", 8, {{"next", p, 0}}); // struct node { struct node *next; }: a loop through a pointer
    const auto btf = parse_btf(b.build());
    CHECK(btf.type_size(2) == 8);
    CHECK(btf.type_size(p) == 8);
}

// --- refusals: the header --------------------------------------------------------------------------------------

TEST_CASE("a blob shorter than the header is refused")
{
    CHECK(refusal(Bytes(10)) == "section '.BTF': header is truncated (10 bytes, it takes 24)");
}

TEST_CASE("a bad or byte-swapped magic is refused")
{
    Small s;
    CHECK(refusal(s.b.build([](btf_header& h) { h.magic = 0x1234; })) ==
          "section '.BTF': bad magic 0x1234 (expected 0xeb9f)");
    CHECK(refusal(s.b.build([](btf_header& h) { h.magic = 0x9feb; })) ==
          "section '.BTF': magic 0x9feb is byte-swapped: big-endian BTF is not supported");
}

TEST_CASE("a version other than 1 and header flags are refused")
{
    Small s;
    CHECK(refusal(s.b.build([](btf_header& h) { h.version = 2; })) ==
          "section '.BTF': version 2 is not supported (expected 1)");
    CHECK(refusal(s.b.build([](btf_header& h) { h.flags = 1; })) ==
          "section '.BTF': header flags 0x1 are not supported");
}

TEST_CASE("a header length shorter than the header or past the blob is refused")
{
    Small s;
    CHECK(refusal(s.b.build([](btf_header& h) { h.hdr_len = 20; })) ==
          "section '.BTF': header length 20 is shorter than 24");
    const auto size = s.b.build().size();
    CHECK(refusal(s.b.build([](btf_header& h) { h.hdr_len = 4096; })) ==
          "section '.BTF': header length 4096 is past the end of the section (" + std::to_string(size) + " bytes)");
}

TEST_CASE("a longer header with a non-zero byte past the known fields is refused")
{
    Small s;
    // With hdr_len 28 the header takes the first word of the types: the int's name offset, 1.
    CHECK(refusal(s.b.build([](btf_header& h) { h.hdr_len = 28; })) ==
          "section '.BTF': header byte 24 past the known fields is not zero");
}

TEST_CASE("an unaligned type section is refused")
{
    Small s;
    CHECK(refusal(s.b.build([](btf_header& h) { h.type_off = 2; })) ==
          "section '.BTF': type section offset 2 is not 4-byte aligned");
}

TEST_CASE("a type or string section past the end of the blob is refused")
{
    Small s; // 24 bytes of header, 16 of types, 5 of strings
    CHECK(refusal(s.b.build([](btf_header& h) { h.type_len = 1000; })) ==
          "section '.BTF': type section (offset 0, 1000 bytes) lies past the end of the section (21 bytes after the "
          "header)");
    CHECK(refusal(s.b.build([](btf_header& h) { h.str_off = 0xfffffff0; })) ==
          "section '.BTF': string section (offset 4294967280, 5 bytes) lies past the end of the section (21 bytes "
          "after the header)");
}

TEST_CASE("overlapping type and string sections are refused")
{
    Small s;
    CHECK(refusal(s.b.build([](btf_header& h) { h.str_off = 12; })) ==
          "section '.BTF': type section (offset 0, 16 bytes) and string section (offset 12, 5 bytes) overlap");
}

// --- refusals: the string section ------------------------------------------------------------------------------

TEST_CASE("an empty string section is refused")
{
    BtfBuilder b;
    CHECK(refusal(b.build([](btf_header& h) { h.str_len = 0; })) ==
          "section '.BTF': string section is empty (it holds at least the empty name)");
}

TEST_CASE("a string section that does not start or end with NUL is refused")
{
    BtfBuilder b;
    b.strings = "x";
    CHECK(refusal(b.build()) == "section '.BTF': string section does not start with NUL (the empty name)");
    b.strings = std::string("\0int", 4);
    CHECK(refusal(b.build()) == "section '.BTF': string section does not end with NUL");
}

TEST_CASE("a string section larger than the kernel's name offsets reach is refused")
{
    BtfBuilder b;
    b.strings = std::string(BTF_MAX_NAME_OFFSET + 2, '\0');
    CHECK(refusal(b.build()) ==
          "section '.BTF': string section of 16777217 bytes is larger than the kernel's 0x1000000");
}

// --- refusals: types ---------------------------------------------------------------------------------------------

TEST_CASE("a type cut short by the end of the type section is refused")
{
    Small s;
    s.b.add_raw({0, btf_info(BTF_KIND_PTR, false, 0)}); // 8 of 12 bytes
    CHECK(refusal(s.b.build()) ==
          "section '.BTF': type [2]: truncated (8 bytes left in the type section, a type takes 12)");
}

TEST_CASE("a type whose tail lies past the end of the type section is refused")
{
    Small s;
    s.b.add_raw({s.b.add_string("s"), btf_info(BTF_KIND_STRUCT, false, 3), 4, 0, 1, 0});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] STRUCT 's': 3 members (36 bytes) lie past the end of "
                                  "the type section (12 bytes left)");
    BtfBuilder b;
    b.add_raw({0, btf_info(BTF_KIND_INT, false, 0), 4});
    CHECK(refusal(b.build()) == "section '.BTF': type [1] INT (anon): its data (4 bytes) lie past the end of the "
                                "type section (0 bytes left)");
}

TEST_CASE("unknown kinds and kind 0 are refused by number")
{
    Small s;
    s.b.add_raw({0, btf_info(20, false, 0), 0});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2]: unknown kind 20 (info 0x14000000)");
    BtfBuilder b;
    b.add_raw({0, 0, 0});
    CHECK(refusal(b.build()) == "section '.BTF': type [1]: unknown kind 0 (info 0x0)");
}

TEST_CASE("a name offset outside the string section is refused")
{
    BtfBuilder b;
    b.add_raw({99, btf_info(BTF_KIND_INT, false, 0), 4, 32});
    CHECK(refusal(b.build()) ==
          "section '.BTF': type [1] INT: name offset 0x63 is outside the string section (1 bytes)");
}

TEST_CASE("reserved bits of a type's info are refused")
{
    Small s;
    s.b.words(s.int_id)[1] |= 1u << 16;
    CHECK(refusal(s.b.build()) == "section '.BTF': type [1] INT 'int': info 0x1010000 sets reserved bits");
    s.b.words(s.int_id)[1] = btf_info(BTF_KIND_INT, false, 0) | 1u << 29;
    CHECK(refusal(s.b.build()) == "section '.BTF': type [1] INT 'int': info 0x21000000 sets reserved bits");
}

TEST_CASE("names that hold control bytes are escaped, so that a message stays one line")
{
    BtfBuilder b;
    b.add_int("int", 4, 0, 32);
    b.add_typedef("a\nb", 9);
    CHECK(refusal(b.build()) == "section '.BTF': type [2] TYPEDEF 'a\\x0ab': names type 9 of 2");
    BtfBuilder long_name;
    long_name.add_typedef(std::string(200, 'n'), 9);
    CHECK(refusal(long_name.build()) ==
          "section '.BTF': type [1] TYPEDEF '" + std::string(80, 'n') + "...': names type 9 of 1");
}

TEST_CASE("an INT with a vlen, a kflag, reserved data bits, a bad size, too many bits or an unknown encoding is "
          "refused")
{
    const auto with = [](BtfWords w) {
        BtfBuilder b;
        b.add_string("int");
        b.add_raw(std::move(w));
        return refusal(b.build());
    };
    const uint32_t info = btf_info(BTF_KIND_INT, false, 0);
    CHECK(with({1, info | 1, 4, 32}) == "section '.BTF': type [1] INT 'int': vlen 1 is not 0");
    CHECK(with({1, btf_info(BTF_KIND_INT, true, 0), 4, 32}) == "section '.BTF': type [1] INT 'int': kflag is set");
    CHECK(with({1, info, 4, 1u << 28 | 32}) ==
          "section '.BTF': type [1] INT 'int': int data 0x10000020 sets reserved bits");
    CHECK(with({1, info, 0, 0}) == "section '.BTF': type [1] INT 'int': size 0 is not 1 to 16 bytes");
    CHECK(with({1, info, 17, 32}) == "section '.BTF': type [1] INT 'int': size 17 is not 1 to 16 bytes");
    CHECK(with({1, info, 4, 8u << 16 | 32}) ==
          "section '.BTF': type [1] INT 'int': offset 8 + 32 bits exceed its size of 4 bytes");
    CHECK(with({1, info, 4, 3u << 24 | 32}) ==
          "section '.BTF': type [1] INT 'int': encoding 3 is not SIGNED, CHAR or BOOL");
    CHECK(with({1, info, 1, BTF_INT_BOOL << 24 | 1}) == "parsed");
}

TEST_CASE("pointers, modifiers and typedefs with a vlen or a kflag are refused, typedefs need a name")
{
    Small s;
    s.b.add_raw({0, btf_info(BTF_KIND_PTR, false, 2), 1});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] PTR (anon): vlen 2 is not 0");
    Small k;
    k.b.add_raw({0, btf_info(BTF_KIND_CONST, true, 0), 1});
    CHECK(refusal(k.b.build()) == "section '.BTF': type [2] CONST (anon): kflag is set");
    Small t;
    t.b.add_raw({0, btf_info(BTF_KIND_TYPEDEF, false, 0), 1});
    CHECK(refusal(t.b.build()) == "section '.BTF': type [2] TYPEDEF (anon): has no name");
}

TEST_CASE("a TYPE_TAG may carry a kflag (an attribute, Linux 6.14) but needs a name")
{
    Small s;
    s.b.add_type_tag("attr", s.int_id, true);
    CHECK(refusal(s.b.build()) == "parsed");
    s.b.add_raw({0, btf_info(BTF_KIND_TYPE_TAG, false, 0), 1});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] TYPE_TAG (anon): has no name");
}

TEST_CASE("an ARRAY with a size is refused")
{
    Small s;
    s.b.add_raw({0, btf_info(BTF_KIND_ARRAY, false, 0), 4, 1, 1, 2});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] ARRAY (anon): size 4 is not 0");
}

TEST_CASE("member, value and param names outside the string section are refused")
{
    Small s;
    s.b.add_raw({0, btf_info(BTF_KIND_STRUCT, false, 1), 4, 77, 1, 0});
    CHECK(refusal(s.b.build()) ==
          "section '.BTF': type [2] STRUCT (anon): member #0: name offset 0x4d is outside the string section (5 "
          "bytes)");
    Small e;
    e.b.add_raw({0, btf_info(BTF_KIND_ENUM, false, 1), 4, 77, 0});
    CHECK(refusal(e.b.build()) ==
          "section '.BTF': type [2] ENUM (anon): value #0: name offset 0x4d is outside the string section (5 bytes)");
    Small p;
    p.b.add_raw({0, btf_info(BTF_KIND_FUNC_PROTO, false, 1), 1, 77, 1});
    CHECK(refusal(p.b.build()) == "section '.BTF': type [2] FUNC_PROTO (anon): param #0: name offset 0x4d is "
                                  "outside the string section (5 bytes)");
}

TEST_CASE("ENUM and ENUM64 sizes other than 1, 2, 4 or 8 are refused")
{
    Small s;
    s.b.add_enum("e", 3, {{"A", 1}});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] ENUM 'e': size 3 is not 1, 2, 4 or 8");
    Small w;
    w.b.add_enum64("w", 16, {{"A", 1}});
    CHECK(refusal(w.b.build()) == "section '.BTF': type [2] ENUM64 'w': size 16 is not 1, 2, 4 or 8");
}

TEST_CASE("a FWD needs a name and no vlen; its kflag says union")
{
    BtfBuilder b;
    b.add_raw({0, btf_info(BTF_KIND_FWD, false, 0), 0});
    CHECK(refusal(b.build()) == "section '.BTF': type [1] FWD (anon): has no name");
    BtfBuilder v;
    v.add_raw({v.add_string("f"), btf_info(BTF_KIND_FWD, true, 1), 0});
    CHECK(refusal(v.build()) == "section '.BTF': type [1] FWD 'f': vlen 1 is not 0");
}

TEST_CASE("a FUNC with a linkage past extern, a kflag, no name or no FUNC_PROTO is refused")
{
    Small s;
    const auto proto = s.b.add_func_proto(s.int_id, {});
    s.b.add_func("f", proto, 3);
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] FUNC 'f': linkage 3 is not static, global or extern");
    s.b.words(3) = {s.b.add_string("f"), btf_info(BTF_KIND_FUNC, true, 1), proto};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] FUNC 'f': kflag is set");
    s.b.words(3) = {0, btf_info(BTF_KIND_FUNC, false, 1), proto};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] FUNC (anon): has no name");
    s.b.words(3) = {s.b.add_string("f"), btf_info(BTF_KIND_FUNC, false, 1), s.int_id};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] FUNC 'f': names type [1] INT 'int', not a FUNC_PROTO");
    s.b.words(3) = {s.b.add_string("f"), btf_info(BTF_KIND_FUNC, false, BTF_FUNC_EXTERN), proto};
    CHECK(refusal(s.b.build()) == "parsed");
}

TEST_CASE("a FUNC_PROTO with a kflag or a void parameter before the last is refused; a last unnamed void is ...")
{
    Small s;
    s.b.add_raw({0, btf_info(BTF_KIND_FUNC_PROTO, true, 0), 1});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] FUNC_PROTO (anon): kflag is set");
    Small v;
    v.b.add_func_proto(v.int_id, {{"", 0}, {"b", v.int_id}});
    CHECK(refusal(v.b.build()) == "section '.BTF': type [2] FUNC_PROTO (anon): param #0 is void");
    Small n;
    n.b.add_func_proto(n.int_id, {{"a", n.int_id}, {"rest", 0}});
    CHECK(refusal(n.b.build()) == "section '.BTF': type [2] FUNC_PROTO (anon): param #1 is void");
    Small ok;
    ok.b.add_func_proto(0, {{"a", ok.int_id}, {"", 0}}); // int f(int a, ...) returning void
    CHECK(refusal(ok.b.build()) == "parsed");
}

TEST_CASE("a VAR with a linkage past extern, a vlen or no name is refused")
{
    Small s;
    s.b.add_var("v", s.int_id, 3);
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] VAR 'v': linkage 3 is not static, global or extern");
    s.b.words(2) = {s.b.add_string("v"), btf_info(BTF_KIND_VAR, false, 1), 1, 0};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] VAR 'v': vlen 1 is not 0");
    s.b.words(2) = {0, btf_info(BTF_KIND_VAR, false, 0), 1, 0};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] VAR (anon): has no name");
}

TEST_CASE("a DATASEC with a kflag, no name, or an entry that is no VAR is refused; .ksyms FUNCs are not")
{
    Small s;
    const auto var = s.b.add_var("v", s.int_id);
    s.b.add_raw({s.b.add_string(".data"), btf_info(BTF_KIND_DATASEC, true, 0), 0});
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] DATASEC '.data': kflag is set");
    s.b.words(3) = {0, btf_info(BTF_KIND_DATASEC, false, 0), 0};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] DATASEC (anon): has no name");
    s.b.words(3) = {s.b.add_string(".data"), btf_info(BTF_KIND_DATASEC, false, 2), 0, var, 0, 4, s.int_id, 4, 4};
    CHECK(refusal(s.b.build()) ==
          "section '.BTF': type [3] DATASEC '.data': var #1 names type [1] INT 'int', not a VAR");
    Small k;
    const auto proto = k.b.add_func_proto(k.int_id, {});
    const auto kfunc = k.b.add_func("bpf_kfunc", proto, BTF_FUNC_EXTERN);
    k.b.add_datasec(".ksyms", 0, {{kfunc, 0, 0}});
    CHECK(refusal(k.b.build()) == "parsed");
}

TEST_CASE("a FLOAT of a size no C type has is refused")
{
    Small s;
    s.b.add_float("f", 3);
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] FLOAT 'f': size 3 is not 2, 4, 8, 12 or 16");
}

TEST_CASE("a DECL_TAG with a component_idx below -1 or without a value is refused; its kflag is an attribute")
{
    Small s;
    const auto var = s.b.add_var("v", s.int_id);
    s.b.add_decl_tag("t", var, -2);
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] DECL_TAG 't': component_idx -2 is below -1");
    s.b.words(3) = {0, btf_info(BTF_KIND_DECL_TAG, false, 0), var, static_cast<uint32_t>(-1)};
    CHECK(refusal(s.b.build()) == "section '.BTF': type [3] DECL_TAG (anon): has no name");
    s.b.words(3) = {s.b.add_string("t"), btf_info(BTF_KIND_DECL_TAG, true, 0), var, static_cast<uint32_t>(-1)};
    CHECK(refusal(s.b.build()) == "parsed");
}

TEST_CASE("a DECL_TAG names a STRUCT, UNION, VAR, FUNC or TYPEDEF, and a component that exists")
{
    Small s;
    const auto ptr = s.b.add_ptr(s.int_id);                             // 2
    const auto st = s.b.add_struct("s", 4, {{"a", s.int_id, 0}});       // 3
    const auto var = s.b.add_var("v", s.int_id);                        // 4
    const auto proto = s.b.add_func_proto(s.int_id, {{"x", s.int_id}}); // 5
    const auto func = s.b.add_func("f", proto);                         // 6
    const auto tag = s.b.add_decl_tag("t", st, 0);                      // 7
    CHECK(refusal(s.b.build()) == "parsed");
    const auto retag = [&](uint32_t target, int32_t idx) {
        s.b.words(tag) = {s.b.add_string("t"), btf_info(BTF_KIND_DECL_TAG, false, 0), target,
                          static_cast<uint32_t>(idx)};
        return refusal(s.b.build());
    };
    CHECK(retag(func, 0) == "parsed");
    CHECK(retag(ptr, -1) ==
          "section '.BTF': type [7] DECL_TAG 't': tags type [2] PTR (anon) (only a STRUCT, UNION, VAR, FUNC or "
          "TYPEDEF)");
    CHECK(retag(0, -1) == "section '.BTF': type [7] DECL_TAG 't': tags void (only a STRUCT, UNION, VAR, FUNC or "
                          "TYPEDEF)");
    CHECK(retag(var, 0) ==
          "section '.BTF': type [7] DECL_TAG 't': component_idx 0 of type [4] VAR 'v', which has no components");
    CHECK(retag(st, 1) ==
          "section '.BTF': type [7] DECL_TAG 't': component_idx 1 is past the 1 members of type [3] STRUCT 's'");
    CHECK(retag(func, 1) ==
          "section '.BTF': type [7] DECL_TAG 't': component_idx 1 is past the 1 params of type [6] FUNC 'f'");
}

TEST_CASE("identifier and DATASEC names longer than the kernel's 512 bytes are refused; INT, FLOAT and tag names "
          "are not")
{
    Small ok;
    ok.b.add_typedef(std::string(512, 'a'), ok.int_id);
    CHECK(refusal(ok.b.build()) == "parsed");
    Small s;
    s.b.add_typedef(std::string(513, 'a'), s.int_id);
    CHECK(refusal(s.b.build()) ==
          "section '.BTF': type [2] TYPEDEF: name is longer than the kernel's 512 bytes (KSYM_NAME_LEN)");
    Small d;
    d.b.add_datasec(std::string(600, '.'), 0, {});
    CHECK(refusal(d.b.build()) ==
          "section '.BTF': type [2] DATASEC: name is longer than the kernel's 512 bytes (KSYM_NAME_LEN)");
    Small m;
    m.b.add_struct("s", 4, {{std::string(513, 'm'), m.int_id, 0}});
    CHECK(refusal(m.b.build()) == "section '.BTF': type [2] STRUCT 's': member #0: name is longer than the kernel's "
                                  "512 bytes (KSYM_NAME_LEN)");

    BtfBuilder b;
    const std::string long_name(5000, 'x');
    const auto i = b.add_int(long_name, 4, 0, 32);
    const auto var = b.add_var("v", i);
    const auto tag = b.add_decl_tag(long_name + "tag", var);
    auto btf = parse_btf(b.build());
    CHECK(btf.find(BTF_KIND_INT, long_name) == i);
    CHECK(btf.find(BTF_KIND_DECL_TAG, long_name + "tag") == tag);
    CHECK_FALSE(btf.find(BTF_KIND_DECL_TAG, long_name).has_value());
    // libbpf keeps a DECL_TAG's value as the name of the INT it becomes: still BTF that parses.
    sanitize(btf, BtfKernelSupport{true, true, true, true, true, false, true, true});
    CHECK(btf.type(tag).kind == BTF_KIND_INT);
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("many types naming one long string keep parsing, lookups, sanitizing and encoding linear")
{
    // 200000 decl tags whose values are the suffixes of one 2 MB string: 4e11 bytes of names, read whole.
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto var = b.add_var("v", i);
    const auto base = b.add_string(std::string(2 << 20, 'a'));
    for (uint32_t k = 0; k < 200000; ++k)
        b.add_raw({base + k, btf_info(BTF_KIND_DECL_TAG, false, 0), var, static_cast<uint32_t>(-1)});
    const auto bytes = b.build();
    const auto start = std::chrono::steady_clock::now();
    auto btf = parse_btf(bytes);
    CHECK_FALSE(btf.find(BTF_KIND_DECL_TAG, "a").has_value());
    CHECK(btf.find(BTF_KIND_VAR, "v") == var);
    sanitize(btf, BtfKernelSupport{true, true, false, true, true, false, true, true});
    CHECK(btf.type(3).kind == BTF_KIND_INT);
    CHECK(encode(btf).size() == bytes.size());
    CHECK(seconds_since(start) < 10.0 * kSlowdown);
}

// --- refusals: references ----------------------------------------------------------------------------------------

TEST_CASE("a type id past the last type is refused wherever a type names it")
{
    const auto with = [](const std::function<void(BtfBuilder&)>& add) {
        Small s;
        add(s.b);
        return refusal(s.b.build());
    };
    CHECK(with([](BtfBuilder& b) { b.add_ptr(9); }) == "section '.BTF': type [2] PTR (anon): names type 9 of 2");
    CHECK(with([](BtfBuilder& b) {
              b.add_struct("foo", 4, {{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}, {"d", 999, 0}});
          }) == "section '.BTF': type [2] STRUCT 'foo': member #3 names type 999 of 2");
    CHECK(with([](BtfBuilder& b) { b.add_array(9, 1, 1); }) ==
          "section '.BTF': type [2] ARRAY (anon): element names type 9 of 2");
    CHECK(with([](BtfBuilder& b) { b.add_array(1, 9, 1); }) ==
          "section '.BTF': type [2] ARRAY (anon): index names type 9 of 2");
    CHECK(with([](BtfBuilder& b) { b.add_func_proto(9, {}); }) ==
          "section '.BTF': type [2] FUNC_PROTO (anon): return type names type 9 of 2");
    CHECK(with([](BtfBuilder& b) {
              b.add_func_proto(1, {{"a", 1}, {"b", 9}});
          }) == "section '.BTF': type [2] FUNC_PROTO (anon): param #1 names type 9 of 2");
    CHECK(with([](BtfBuilder& b) {
              b.add_datasec(".data", 4, {{9, 0, 4}});
          }) == "section '.BTF': type [2] DATASEC '.data': var #0 names type 9 of 2");
    CHECK(with([](BtfBuilder& b) { b.add_var("v", 0xffffffff); }) ==
          "section '.BTF': type [2] VAR 'v': names type 4294967295 of 2");
}

TEST_CASE("an array of void or a struct member of void is refused")
{
    Small s;
    s.b.add_array(0, 1, 1);
    CHECK(refusal(s.b.build()) == "section '.BTF': type [2] ARRAY (anon): element type is void");
    Small m;
    m.b.add_struct("s", 4, {{"a", 1, 0}, {"v", 0, 0}});
    CHECK(refusal(m.b.build()) == "section '.BTF': type [2] STRUCT 's': member #1 is void");
}

TEST_CASE("a type that contains itself by value is refused, naming the loop")
{
    BtfBuilder b;
    b.add_typedef("a", 2);
    b.add_typedef("b", 1);
    CHECK(refusal(b.build()) == "section '.BTF': type [1] TYPEDEF 'a': contains itself (a loop through type [2] "
                                "TYPEDEF 'b')");
    BtfBuilder s;
    s.add_int("int", 4, 0, 32);
    s.add_array(3, 1, 2);
    s.add_struct("s", 8, {{"a", 2, 0}});
    CHECK(refusal(s.build()) ==
          "section '.BTF': type [2] ARRAY (anon): contains itself (a loop through type [3] STRUCT 's')");
    BtfBuilder self;
    self.add_const(1);
    CHECK(refusal(self.build()) ==
          "section '.BTF': type [1] CONST (anon): contains itself (a loop through type [1] CONST (anon))");
}

TEST_CASE("more types than the kernel numbers are refused")
{
    BtfBuilder b;
    for (uint32_t i = 0; i <= BTF_MAX_TYPE; ++i)
        b.add_ptr(0);
    CHECK(refusal(b.build()) == "section '.BTF': more than 1048575 types");
}

// --- lookups -----------------------------------------------------------------------------------------------------

TEST_CASE("type() refuses an id past the last type and string() an offset past the string section")
{
    Small s;
    const auto btf = parse_btf(s.b.build());
    CHECK(error_of([&] { (void)btf.type(2); }) == "section '.BTF': type 2 of 1 does not exist");
    CHECK(error_of([&] { (void)btf.string(5); }) ==
          "section '.BTF': string offset 0x5 is outside the string section (5 bytes)");
    CHECK(btf.string(2) == "nt"); // the tail of "int": a valid name, as the kernel reads offsets
    CHECK(btf.label(0) == "void");
    CHECK(btf.label(1) == "type [1] INT 'int'");
    CHECK(btf.name(0).empty());
}

TEST_CASE("find returns the lowest id of a kind and a name, and sees renames")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto s1 = b.add_struct("dup", 4, {{"a", i, 0}});
    b.add_struct("dup", 4, {{"a", i, 0}});
    const auto u = b.add_union("dup", 4, {{"a", i, 0}});
    auto btf = parse_btf(b.build());
    CHECK(btf.find(BTF_KIND_STRUCT, "dup") == s1);
    CHECK(btf.find(BTF_KIND_UNION, "dup") == u);
    CHECK(btf.find(BTF_KIND_INT, "int") == i);
    CHECK_FALSE(btf.find(BTF_KIND_STRUCT, "int").has_value());
    CHECK_FALSE(btf.find(BTF_KIND_STRUCT, "").has_value());
    btf.mutable_type(s1).name_off = btf.add_string("renamed");
    CHECK(btf.find(BTF_KIND_STRUCT, "dup") == s1 + 1);
    CHECK(btf.find(BTF_KIND_STRUCT, "renamed") == s1);
}

TEST_CASE("kinds are named as bpftool names them, and by number past the last")
{
    CHECK(btf_kind_name(BTF_KIND_UNKN) == "UNKN");
    CHECK(btf_kind_name(BTF_KIND_FUNC_PROTO) == "FUNC_PROTO");
    CHECK(btf_kind_name(BTF_KIND_ENUM64) == "ENUM64");
    CHECK(btf_kind_name(25) == "kind 25");
}

TEST_CASE("add_string reuses a whole string of the section and appends others")
{
    Btf btf;
    const auto a = btf.add_string("abc");
    CHECK(a == 1);
    CHECK(btf.add_string("abc") == a);
    CHECK(btf.add_string("bc") == 5); // a suffix is no whole string: appended
    CHECK(btf.add_string("") == 0);
    CHECK(btf.strings() == std::string("\0abc\0bc\0", 8));
    CHECK(error_of([&] { (void)btf.add_string(std::string_view("a\0b", 3)); }) ==
          "section '.BTF': cannot add a string holding NUL");
}

TEST_CASE("a string section edited out of shape is refused by string() and add_string()")
{
    Btf btf;
    btf.add_string("abc");
    btf.mutable_strings().back() = 'x'; // "\0abcx"
    CHECK(error_of([&] { (void)btf.string(1); }) == "section '.BTF': string at offset 0x1 is not NUL-terminated");
    CHECK(error_of([&] { (void)btf.add_string("new"); }) == "section '.BTF': string section does not end with NUL");
    Btf full;
    full.mutable_strings().assign(BTF_MAX_NAME_OFFSET, '\0');
    CHECK(error_of([&] { (void)full.add_string("one more"); }) ==
          "section '.BTF': string section would grow past 0xffffff");
}

TEST_CASE("resolve skips typedefs, const, volatile, restrict and type tags")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto tt = b.add_type_tag("user", i);
    const auto v = b.add_volatile(tt);
    const auto c = b.add_const(v);
    const auto td = b.add_typedef("t", c);
    const auto p = b.add_ptr(td);
    const auto r = b.add_restrict(p);
    const auto btf = parse_btf(b.build());
    CHECK(btf.resolve(td) == i);
    CHECK(btf.resolve(r) == p);
    CHECK(btf.resolve(p) == p);
    CHECK(btf.resolve(0) == 0);
}

TEST_CASE("type_size follows modifiers, arrays, vars and tags, and refuses what has no size")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);                // 1
    const auto a = b.add_array(i, i, 3);                                   // 2
    const auto aa = b.add_array(a, i, 5);                                  // 3
    const auto td = b.add_typedef("t", aa);                                // 4
    const auto p = b.add_ptr(0);                                           // 5
    const auto v = b.add_var("v", td);                                     // 6
    const auto fwd = b.add_fwd("later");                                   // 7
    const auto c = b.add_const(fwd);                                       // 8
    const auto e = b.add_enum("e", 2, {{"A", 1}});                         // 9
    const auto big = b.add_array(i, i, 0x40000000);                        // 10
    const auto proto = b.add_func_proto(i, {});                            // 11
    const auto zero = b.add_array(i, i, 0);                                // 12
    const auto wide = b.add_array(b.add_array(i, i, 0x10000), i, 0x10000); // 14, of 13
    const auto btf = parse_btf(b.build());
    CHECK(btf.type_size(aa) == 60);
    CHECK(btf.type_size(td) == 60);
    CHECK(btf.type_size(v) == 60);
    CHECK(btf.type_size(p) == 8);
    CHECK(btf.type_size(e) == 2);
    CHECK(btf.type_size(zero) == 0);
    CHECK(error_of([&] { (void)btf.type_size(fwd); }) == "section '.BTF': type [7] FWD 'later': has no size");
    CHECK(error_of([&] { (void)btf.type_size(c); }) ==
          "section '.BTF': type [8] CONST (anon): has no size (it is made of type [7] FWD 'later')");
    CHECK(error_of([&] { (void)btf.type_size(0); }) == "section '.BTF': void: has no size");
    CHECK(error_of([&] { (void)btf.type_size(proto); }) == "section '.BTF': type [11] FUNC_PROTO (anon): has no size");
    CHECK(error_of([&] { (void)btf.type_size(big); }) ==
          "section '.BTF': type [10] ARRAY (anon): size of more than 4294967295 bytes");
    CHECK(error_of([&] { (void)btf.type_size(wide); }) == // 2^16 x 2^16 ints
          "section '.BTF': type [14] ARRAY (anon): size of more than 4294967295 bytes");
}

TEST_CASE("type_size and resolve end on a loop that a caller built after parsing")
{
    Small s;
    s.b.add_typedef("t", s.int_id);
    auto btf = parse_btf(s.b.build());
    btf.mutable_type(2).size_or_type = 2;
    CHECK(error_of([&] { (void)btf.type_size(2); }) ==
          "section '.BTF': type [2] TYPEDEF 't': a loop of types by value");
    CHECK(error_of([&] { (void)btf.resolve(2); }) == "section '.BTF': type [2] TYPEDEF 't': a loop of modifiers and "
                                                     "typedefs");
}

TEST_CASE("lookups see an edit made through mutable_type")
{
    Small s;
    const auto td = s.b.add_typedef("t", s.int_id);
    const auto p = s.b.add_ptr(s.int_id);
    auto btf = parse_btf(s.b.build());
    CHECK(btf.resolve(td) == s.int_id);
    CHECK(btf.type_size(td) == 4);
    btf.mutable_type(td).size_or_type = p;
    CHECK(btf.resolve(td) == p);
    CHECK(btf.type_size(td) == 8);
}

TEST_CASE("an array of no elements has size 0, however large its element")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto huge = b.add_array(b.add_array(i, i, 0x10000), i, 0x10000);
    const auto none = b.add_array(huge, i, 0);
    const auto btf = parse_btf(b.build());
    CHECK(btf.type_size(none) == 0);
    CHECK_THROWS_AS((void)btf.type_size(huge), Error);
}

TEST_CASE("a chain of 100000 typedefs named by 65535 map members is walked once, not once per member")
{
    // Without the caches, each member's resolve walks the whole chain: 6.5e9 steps.
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto index = b.add_int("__ARRAY_SIZE_TYPE__", 4, 0, 32);
    uint32_t top = b.add_ptr(b.add_array(i, index, BPF_MAP_TYPE_ARRAY));
    for (int k = 0; k < 100000; ++k)
        top = b.add_typedef("t", top);
    const auto def = b.add_struct("", 8, std::vector<BtfBuilder::Member>(65535, {"type", top, 0}));
    const auto var = b.add_var("m", def);
    const auto btf = parse_btf(b.build());
    const auto start = std::chrono::steady_clock::now();
    CHECK(parse_btf_map_def(btf, var).type == BPF_MAP_TYPE_ARRAY);
    CHECK(seconds_since(start) < 5.0 * kSlowdown);
}

TEST_CASE("find_member finds members by name, inside anonymous structs and unions, with their bit offsets")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);                       // 1
    const auto inner = b.add_struct("", 8, {{"x", i, 0}, {"y", i, 32}});          // 2
    const auto un = b.add_union("", 8, {{"", inner, 0}, {"raw", i, 0}});          // 3
    const auto outer = b.add_struct("outer", 16, {{"head", i, 0}, {"", un, 64}}); // 4
    const auto td = b.add_typedef("outer_t", outer);                              // 5
    const auto btf = parse_btf(b.build());
    const auto y = btf.find_member(td, "y");
    REQUIRE(y.has_value());
    CHECK(y->parent == inner);
    CHECK(y->index == 1);
    CHECK(y->bit_offset == 96);
    const auto raw = btf.find_member(outer, "raw");
    REQUIRE(raw.has_value());
    CHECK(raw->parent == un);
    CHECK(raw->bit_offset == 64);
    CHECK(btf.find_member(outer, "head")->bit_offset == 0);
    CHECK_FALSE(btf.find_member(outer, "z").has_value());
    CHECK(error_of([&] { (void)btf.find_member(i, "x"); }) ==
          "section '.BTF': type [1] INT 'int': is no STRUCT or UNION");
}

TEST_CASE("find_member searches each anonymous type once, however often it is shared")
{
    // Level k holds two anonymous members of level k - 1: 2^60 paths to the bottom, 61 types.
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    uint32_t level = b.add_struct("", 4, {{"leaf", i, 0}});
    for (int k = 0; k < 60; ++k)
        level = b.add_struct("", 8, {{"", level, 0}, {"", level, 0}});
    const auto btf = parse_btf(b.build());
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(btf.find_member(level, "missing").has_value());
    CHECK(btf.find_member(level, "leaf").has_value());
    CHECK(seconds_since(start) < 1.0);
}

// --- encode ------------------------------------------------------------------------------------------------------

TEST_CASE("encode refuses a vlen that disagrees with the members, an unknown kind or a broken string section")
{
    Small s;
    s.b.add_struct("s", 4, {{"a", 1, 0}});
    auto btf = parse_btf(s.b.build());
    btf.mutable_type(2).vlen = 2;
    CHECK(error_of([&] { (void)encode(btf); }) == "section '.BTF': type [2] STRUCT 's': vlen 2, but 1 members");
    btf.mutable_type(2).vlen = 1;
    btf.mutable_type(2).kind = 31;
    CHECK(error_of([&] { (void)encode(btf); }) == "section '.BTF': type [2]: unknown kind 31");
    btf.mutable_type(2).kind = BTF_KIND_STRUCT;
    btf.mutable_strings().back() = 'x';
    CHECK(error_of([&] { (void)encode(btf); }) == "section '.BTF': string section does not end with NUL");
    btf.mutable_strings() = "x";
    CHECK(error_of([&] { (void)encode(btf); }) == "section '.BTF': string section does not start with NUL");
}

TEST_CASE("types added to a parsed BTF encode and parse again")
{
    Small s;
    auto btf = parse_btf(s.b.build());
    BtfType ptr;
    ptr.kind = BTF_KIND_PTR;
    ptr.size_or_type = 1;
    const auto id = btf.add_type(ptr);
    BtfType st;
    st.kind = BTF_KIND_STRUCT;
    st.name_off = btf.add_string("added");
    st.size_or_type = 8;
    st.vlen = 1;
    st.members = {{btf.add_string("p"), id, 0}};
    btf.add_type(st);
    const auto again = parse_btf(encode(btf));
    CHECK(again == btf);
    CHECK(again.find(BTF_KIND_STRUCT, "added") == 3);
}

// --- fix-ups -----------------------------------------------------------------------------------------------------

namespace {

struct Datasecs {
    BtfBuilder b;
    uint32_t a = 0, b_var = 0, hidden = 0, local = 0, data = 0, ksyms = 0;
    Datasecs()
    {
        const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
        a = b.add_var("a", i);
        b_var = b.add_var("b", i);
        hidden = b.add_var("h", i);
        local = b.add_var("local", i, BTF_VAR_STATIC);
        data = b.add_datasec(".data", 0, {{a, 0, 4}, {b_var, 0, 4}, {hidden, 0, 4}, {local, 0, 4}});
        const auto ext1 = b.add_var("ext1", i, BTF_VAR_GLOBAL_EXTERN);
        const auto ext2 = b.add_var("ext2", i, BTF_VAR_GLOBAL_EXTERN);
        ksyms = b.add_datasec(".ksyms", 0, {{ext1, 8, 4}, {ext2, 0, 4}});
    }
};

std::optional<uint64_t> size_of(std::string_view s)
{
    if (s == ".data")
        return 16;
    return std::nullopt;
}

std::optional<BtfVarSymbol> symbol_of(std::string_view v)
{
    if (v == "a")
        return BtfVarSymbol{8, false};
    if (v == "b")
        return BtfVarSymbol{0, false};
    if (v == "h")
        return BtfVarSymbol{4, true};
    return std::nullopt;
}

} // namespace

TEST_CASE("fixup_datasecs sets a DATASEC's size, its global vars' offsets, and sorts them by offset")
{
    Datasecs d;
    auto btf = parse_btf(d.b.build());
    fixup_datasecs(btf, size_of, symbol_of);
    const auto& data = btf.type(d.data);
    CHECK(data.size_or_type == 16);
    // local (static) keeps offset 0 and was not looked up; the sort is stable.
    CHECK(data.vars == std::vector<BtfVarSecinfo>{{d.b_var, 0, 4}, {d.local, 0, 4}, {d.hidden, 4, 4}, {d.a, 8, 4}});
    CHECK(btf.type(d.hidden).linkage == BTF_VAR_STATIC); // STV_HIDDEN: static, as libbpf marks it
    CHECK(btf.type(d.a).linkage == BTF_VAR_GLOBAL_ALLOCATED);
    // .ksyms: size and offsets are libbpf's to set when it collects externs; only sorted here.
    const auto& ksyms = btf.type(d.ksyms);
    CHECK(ksyms.size_or_type == 0);
    CHECK(ksyms.vars[0].offset == 0);
    CHECK(ksyms.vars[1].offset == 8);
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("fixup_datasecs keeps the offsets of a DATASEC that has a size, but still marks hidden vars static")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto h = b.add_var("h", i);
    const auto a = b.add_var("a", i);
    const auto sec = b.add_datasec(".data", 16, {{a, 12, 4}, {h, 2, 4}});
    auto btf = parse_btf(b.build());
    fixup_datasecs(btf, size_of, symbol_of);
    CHECK(btf.type(sec).size_or_type == 16);
    CHECK(btf.type(sec).vars == std::vector<BtfVarSecinfo>{{h, 2, 4}, {a, 12, 4}});
    CHECK(btf.type(h).linkage == BTF_VAR_STATIC);
}

TEST_CASE("fixup_datasecs names the DATASEC and what is missing")
{
    Datasecs d;
    const auto btf = parse_btf(d.b.build());
    auto no_size = btf;
    CHECK(error_of([&] {
              fixup_datasecs(
                  no_size, [](std::string_view) { return std::nullopt; }, symbol_of);
          }) == "section '.BTF': DATASEC '.data': no ELF section '.data' gives its size");
    auto zero = btf;
    CHECK(error_of([&] {
              fixup_datasecs(
                  zero, [](std::string_view) { return std::optional<uint64_t>(0); }, symbol_of);
          }) == "section '.BTF': DATASEC '.data': no ELF section '.data' gives its size");
    auto huge = btf;
    CHECK(error_of([&] {
              fixup_datasecs(
                  huge, [](std::string_view) { return std::optional<uint64_t>(1ull << 32); }, symbol_of);
          }) == "section '.BTF': DATASEC '.data': ELF section size 4294967296 does not fit 32 bits");
    auto no_symbol = btf;
    CHECK(error_of([&] {
              fixup_datasecs(no_symbol, size_of, [](std::string_view v) -> std::optional<BtfVarSymbol> {
                  if (v == "b")
                      return std::nullopt;
                  return BtfVarSymbol{};
              });
          }) == "section '.BTF': DATASEC '.data': no ELF symbol for VAR 'b'");
    auto far = btf;
    CHECK(error_of([&] {
              fixup_datasecs(far, size_of, [](std::string_view) { return BtfVarSymbol{1ull << 32, false}; });
          }) == "section '.BTF': DATASEC '.data': VAR 'a': symbol offset 4294967296 does not fit 32 bits");
}

TEST_CASE("fixup_datasecs refuses a FUNC in a DATASEC other than .ksyms")
{
    Small s;
    const auto proto = s.b.add_func_proto(s.int_id, {});
    const auto func = s.b.add_func("f", proto, BTF_FUNC_EXTERN);
    s.b.add_datasec(".data", 0, {{func, 0, 0}});
    auto btf = parse_btf(s.b.build());
    CHECK(error_of([&] { fixup_datasecs(btf, size_of, symbol_of); }) ==
          "section '.BTF': DATASEC '.data': entry #0 is type [3] FUNC 'f', not a VAR");
}

TEST_CASE("fixup_datasecs with an ELF file takes the section sizes and its global STT_OBJECT symbols")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    auto btf = parse_btf(o.btf_bytes);
    fixup_datasecs(btf, o.elf);
    const auto& maps = btf.type(find_id(btf, BTF_KIND_DATASEC, ".maps"));
    CHECK(maps.size_or_type == o.elf.find_section(".maps")->size);
    REQUIRE(maps.vars.size() == 3);
    CHECK(maps.vars[0].offset == 0);
    CHECK(maps.vars[1].offset > 0);
    // Without the symbols, the same fix-up names the first var it cannot place.
    auto stripped = o.elf;
    stripped.symbols.resize(1);
    auto again = parse_btf(o.btf_bytes);
    CHECK(error_of([&] { fixup_datasecs(again, stripped); }).find("no ELF symbol for VAR") != std::string::npos);
}

// --- sanitize ----------------------------------------------------------------------------------------------------

namespace {

BtfKernelSupport without(bool BtfKernelSupport::*feature)
{
    BtfKernelSupport k;
    k.*feature = false;
    return k;
}

} // namespace

TEST_CASE("without DATASEC support, a VAR becomes an INT of 1 byte and a DATASEC a STRUCT of its vars")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto v1 = b.add_var("first", i);
    const auto v2 = b.add_var("second", i);
    const auto sec = b.add_datasec(".data?x", 8, {{v1, 0, 4}, {v2, 4, 4}});
    auto btf = parse_btf(b.build());
    sanitize(btf, without(&BtfKernelSupport::datasec));
    const auto& var = btf.type(v1);
    CHECK(var.kind == BTF_KIND_INT);
    CHECK(var.size_or_type == 1);
    CHECK(var.int_data == 8); // BTF_INT_ENC(0, 0, 8)
    CHECK(btf.name(v1) == "first");
    const auto& st = btf.type(sec);
    CHECK(st.kind == BTF_KIND_STRUCT);
    CHECK(st.size_or_type == 8);
    CHECK(btf.name(sec) == "_data_x"); // '.' and '?' replaced, in the string section itself
    REQUIRE(st.members.size() == 2);
    CHECK(st.members[1] == BtfMember{btf.type(v2).name_off, v2, 32});
    CHECK(btf.string(st.members[1].name_off) == "second");
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("without DECL_TAG support, a DECL_TAG becomes an INT of 1 byte")
{
    Small s;
    const auto var = s.b.add_var("v", s.int_id);
    const auto tag = s.b.add_decl_tag("t", var);
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::decl_tag));
    CHECK(btf.type(tag).kind == BTF_KIND_INT);
    CHECK(btf.type(tag).size_or_type == 1);
    CHECK(btf.type(tag).int_data == 8);
    CHECK(btf.type(var).kind == BTF_KIND_VAR);
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("without '?' in DATASEC names, only the leading '?' becomes '_'")
{
    Small s;
    const auto var = s.b.add_var("v", s.int_id);
    const auto sec = s.b.add_datasec("?.struct_ops?", 4, {{var, 0, 4}});
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::qmark_datasec));
    CHECK(btf.type(sec).kind == BTF_KIND_DATASEC);
    CHECK(btf.name(sec) == "_.struct_ops?");
}

TEST_CASE("without FUNC support, a FUNC_PROTO becomes an ENUM of its params and a FUNC a TYPEDEF")
{
    Small s;
    const auto proto = s.b.add_func_proto(s.int_id, {{"ctx", s.int_id}, {"n", s.int_id}});
    const auto func = s.b.add_func("prog", proto);
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::func));
    const auto& e = btf.type(proto);
    CHECK(e.kind == BTF_KIND_ENUM);
    CHECK(e.size_or_type == 4);
    REQUIRE(e.enum_values.size() == 2);
    CHECK(btf.string(e.enum_values[1].name_off) == "n");
    CHECK(e.enum_values[1].value == s.int_id); // the param's type id, as libbpf leaves it
    CHECK(btf.type(func).kind == BTF_KIND_TYPEDEF);
    CHECK(btf.type(func).size_or_type == proto);
    CHECK(btf.name(func) == "prog");
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("without global FUNC support, a global FUNC becomes static")
{
    Small s;
    const auto proto = s.b.add_func_proto(s.int_id, {});
    const auto func = s.b.add_func("prog", proto, BTF_FUNC_GLOBAL);
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::func_global));
    CHECK(btf.type(func).kind == BTF_KIND_FUNC);
    CHECK(btf.type(func).vlen == BTF_FUNC_STATIC);
}

TEST_CASE("without FLOAT support, a FLOAT becomes an anonymous empty STRUCT of its size")
{
    Small s;
    const auto f = s.b.add_float("double", 8);
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::float_));
    CHECK(btf.type(f).kind == BTF_KIND_STRUCT);
    CHECK(btf.type(f).size_or_type == 8);
    CHECK(btf.type(f).members.empty());
    CHECK(btf.name(f).empty());
    CHECK(btf.type_size(f) == 8);
}

TEST_CASE("without TYPE_TAG support, a TYPE_TAG becomes an anonymous CONST of the same type")
{
    Small s;
    const auto tag = s.b.add_type_tag("user", s.int_id);
    const auto ptr = s.b.add_ptr(tag);
    auto btf = parse_btf(s.b.build());
    sanitize(btf, without(&BtfKernelSupport::type_tag));
    CHECK(btf.type(tag).kind == BTF_KIND_CONST);
    CHECK(btf.type(tag).size_or_type == s.int_id);
    CHECK(btf.name(tag).empty());
    CHECK(btf.resolve(btf.type(ptr).size_or_type) == s.int_id);
}

TEST_CASE("without ENUM64 support, an ENUM loses its kflag and each ENUM64 becomes a UNION over one placeholder")
{
    BtfBuilder b;
    const auto e = b.add_enum("e", 4, {{"A", -1}}, true);
    const auto w1 = b.add_enum64("w1", 8, {{"BIG", int64_t{1} << 40}, {"HUGE", int64_t{1} << 50}});
    const auto w2 = b.add_enum64("w2", 8, {{"X", 1}});
    auto btf = parse_btf(b.build());
    sanitize(btf, without(&BtfKernelSupport::enum64));
    CHECK_FALSE(btf.type(e).kflag);
    REQUIRE(btf.types().size() == 5); // one placeholder, added once, at the end
    const auto placeholder = 4u;
    CHECK(btf.name(placeholder) == "enum64_placeholder");
    CHECK(btf.type(placeholder).kind == BTF_KIND_INT);
    CHECK(btf.type(placeholder).size_or_type == 1);
    CHECK(btf.type(placeholder).int_data == 8);
    for (const auto id : {w1, w2}) {
        const auto& u = btf.type(id);
        CHECK(u.kind == BTF_KIND_UNION);
        CHECK(u.size_or_type == 8);
        for (const auto& m : u.members) {
            CHECK(m.type == placeholder);
            CHECK(m.offset == 0);
        }
    }
    CHECK(btf.string(btf.type(w1).members[1].name_off) == "HUGE");
    CHECK(parse_btf(encode(btf)) == btf);
}

TEST_CASE("a kernel that supports every kind leaves the BTF as it is")
{
    Small s;
    const auto proto = s.b.add_func_proto(s.int_id, {});
    s.b.add_func("f", proto);
    s.b.add_float("float", 4);
    s.b.add_enum64("w", 8, {{"X", 1}}, true);
    const auto before = parse_btf(s.b.build());
    auto after = before;
    sanitize(after, BtfKernelSupport{});
    CHECK(after == before);
    CHECK(BtfKernelSupport{}.all());
    CHECK_FALSE(without(&BtfKernelSupport::enum64).all());
}

TEST_CASE("encode_for_kernel encodes a sanitized copy and leaves the BTF it was given as it was")
{
    const auto o = read_object("SOCKREDIR_BTF_OBJECT");
    auto btf = parse_btf(o.btf_bytes);
    fixup_datasecs(btf, o.elf);
    const auto before = btf;
    const auto old_kernel = without(&BtfKernelSupport::float_);
    const auto loaded = parse_btf(encode_for_kernel(btf, old_kernel));
    CHECK(btf == before);
    auto expected = btf;
    sanitize(expected, old_kernel);
    CHECK(loaded == expected);
    const auto flows = find_id(btf, BTF_KIND_VAR, "flows");
    CHECK(parse_btf_map_def(loaded, flows).key_type_id == parse_btf_map_def(btf, flows).key_type_id);
    CHECK(same_bytes(encode_for_kernel(btf, BtfKernelSupport{}), encode(btf)));
}

TEST_CASE("sanitizing a DATASEC whose var offset does not fit a member's bit offset is refused")
{
    Small s;
    const auto var = s.b.add_var("v", s.int_id);
    s.b.add_datasec(".data", 0, {{var, 0x20000000, 4}});
    auto btf = parse_btf(s.b.build());
    CHECK(error_of([&] { sanitize(btf, without(&BtfKernelSupport::datasec)); }) ==
          "section '.BTF': type [3] DATASEC '.data': var #0 offset 536870912 is too large for a STRUCT member");
}

// --- BTF-defined maps --------------------------------------------------------------------------------------------

namespace {

// Builds map definitions the way __uint and __type write them.
struct Maps {
    BtfBuilder b;
    uint32_t int_id = 0, index = 0, key = 0, value = 0;
    Maps()
    {
        int_id = b.add_int("int", 4, BTF_INT_SIGNED, 32);
        index = b.add_int("__ARRAY_SIZE_TYPE__", 4, 0, 32);
        key = b.add_struct("k", 8, {{"a", int_id, 0}, {"b", int_id, 32}});
        value = b.add_int("long", 8, BTF_INT_SIGNED, 64);
    }
    // __uint(name, n): int (*name)[n]
    BtfBuilder::Member uint_member(const std::string& name, uint32_t n)
    {
        return {name, b.add_ptr(b.add_array(int_id, index, n)), 0};
    }
    // __type(name, T): T *name
    BtfBuilder::Member type_member(const std::string& name, uint32_t t) { return {name, b.add_ptr(t), 0}; }
    // A VAR of the struct of `members`, in a DATASEC ".maps"; returns the VAR's id.
    uint32_t map(const std::string& name, const std::vector<BtfBuilder::Member>& members,
                 uint32_t linkage = BTF_VAR_GLOBAL_ALLOCATED)
    {
        const auto def = b.add_struct("", static_cast<uint32_t>(members.size() * 8), members);
        return b.add_var(name, def, linkage);
    }
    Btf btf() const { return parse_btf(b.build()); }
};

std::string map_error(Maps& m, const std::vector<BtfBuilder::Member>& members)
{
    const auto var = m.map("m", members);
    const auto btf = m.btf();
    return error_of([&] { (void)parse_btf_map_def(btf, var); });
}

} // namespace

TEST_CASE("a map definition gives type, sizes, entries, flags, pinning, numa node, map_extra and the key and value "
          "types")
{
    Maps m;
    const auto extra_enum = m.b.add_enum64("", 8, {{"X", int64_t{1} << 33}});
    const auto var = m.map("m", {m.uint_member("type", BPF_MAP_TYPE_HASH),
                                 m.uint_member("max_entries", 64),
                                 m.uint_member("map_flags", BPF_F_NO_PREALLOC),
                                 m.uint_member("numa_node", 1),
                                 m.uint_member("pinning", kBtfPinByName),
                                 m.type_member("key", m.key),
                                 m.type_member("value", m.value),
                                 {"map_extra", extra_enum, 0}});
    const auto def = parse_btf_map_def(m.btf(), var);
    CHECK(def.name == "m");
    CHECK(def.type == BPF_MAP_TYPE_HASH);
    CHECK(def.max_entries == 64);
    CHECK(def.map_flags == BPF_F_NO_PREALLOC);
    CHECK(def.numa_node == 1);
    CHECK(def.pinning == kBtfPinByName);
    CHECK(def.key_size == 8);
    CHECK(def.key_type_id == m.key);
    CHECK(def.value_size == 8);
    CHECK(def.value_type_id == m.value);
    CHECK(def.map_extra == uint64_t{1} << 33);
    CHECK(def.inner.empty());
    CHECK_FALSE(def.has_values);
}

TEST_CASE("key_size and value_size may state the sizes instead of types, and must agree with them")
{
    Maps m;
    CHECK(map_error(m, {m.uint_member("type", BPF_MAP_TYPE_HASH), m.uint_member("key_size", 4),
                        m.type_member("key", m.key)}) == "section '.BTF': map 'm': conflicting key size 4 != 8");
    Maps v;
    CHECK(map_error(v, {v.uint_member("type", BPF_MAP_TYPE_HASH), v.type_member("value", v.value),
                        v.uint_member("value_size", 4)}) == "section '.BTF': map 'm': conflicting value size 8 != 4");
    Maps ok;
    const auto var = ok.map("m", {ok.uint_member("type", BPF_MAP_TYPE_ARRAY), ok.uint_member("key_size", 4),
                                  ok.uint_member("value_size", 8), ok.type_member("value", ok.value)});
    const auto def = parse_btf_map_def(ok.btf(), var);
    CHECK(def.key_size == 4);
    CHECK(def.key_type_id == 0);
    CHECK(def.value_type_id == ok.value);
}

TEST_CASE("a map definition that is no global VAR of a STRUCT is refused")
{
    Maps m;
    const auto def = m.b.add_struct("", 8, {m.uint_member("type", 1)});
    const auto stat = m.b.add_var("st", def, BTF_VAR_STATIC);
    const auto not_struct = m.b.add_var("ns", m.int_id);
    const auto btf = m.btf();
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, def); }) ==
          "section '.BTF': type [" + std::to_string(def) + "] STRUCT (anon): a map definition is a VAR");
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, stat); }) ==
          "section '.BTF': map 'st': unsupported map linkage static (a map is a global definition)");
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, not_struct); }) ==
          "section '.BTF': map 'ns': unexpected def kind INT (expected STRUCT)");
    auto unnamed = btf;
    unnamed.mutable_type(stat).name_off = 0;
    CHECK(error_of([&] { (void)parse_btf_map_def(unnamed, stat); }) ==
          "section '.BTF': type [" + std::to_string(stat) + "] VAR (anon): map has no name");
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, 999); }) ==
          "section '.BTF': type 999 of " + std::to_string(btf.types().size() - 1) + " does not exist");
}

TEST_CASE("map attributes that are not pointers to arrays, and keys that are not pointers, are refused")
{
    Maps m;
    CHECK(map_error(m, {{"type", m.int_id, 0}}) == "section '.BTF': map 'm': attr 'type': expected PTR, got INT");
    Maps a;
    CHECK(map_error(a, {{"max_entries", a.b.add_ptr(a.int_id), 0}}) ==
          "section '.BTF': map 'm': attr 'max_entries': expected ARRAY, got INT");
    Maps k;
    CHECK(map_error(k, {k.uint_member("type", 1), {"key", k.key, 0}}) ==
          "section '.BTF': map 'm': key spec is not PTR: STRUCT");
    Maps f;
    const auto fwd = f.b.add_fwd("opaque");
    CHECK(map_error(f, {f.uint_member("type", 1), f.type_member("value", fwd)}) ==
          "section '.BTF': map 'm': cannot determine value size: type [" + std::to_string(fwd) +
              "] FWD 'opaque': has no size");
}

TEST_CASE("unknown, unnamed and malformed map members are refused, and a map needs a type")
{
    Maps m;
    CHECK(map_error(m, {m.uint_member("type", 1), m.uint_member("bogus", 1)}) ==
          "section '.BTF': map 'm': unknown field 'bogus'");
    Maps n;
    CHECK(map_error(n, {n.uint_member("", 1)}) == "section '.BTF': map 'm': member #0 has no name");
    Maps t;
    CHECK(map_error(t, {t.uint_member("max_entries", 1)}) == "section '.BTF': map 'm': map type isn't specified");
    Maps p;
    CHECK(map_error(p, {p.uint_member("type", 1), p.uint_member("pinning", 2)}) ==
          "section '.BTF': map 'm': invalid pinning value 2");
    Maps e;
    const auto two = e.b.add_enum("", 4, {{"A", 1}, {"B", 2}});
    CHECK(map_error(e, {e.uint_member("type", 1), {"map_extra", two, 0}}) ==
          "section '.BTF': map 'm': attr 'map_extra': 2 enum values, expected one");
    Maps x;
    CHECK(map_error(x, {x.uint_member("type", 1), {"map_extra", x.int_id, 0}}) ==
          "section '.BTF': map 'm': attr 'map_extra': expected ENUM or ENUM64, got INT");
    Maps u;
    const auto var = u.map("m", {u.uint_member("type", 1), u.uint_member("map_extra", 7)});
    CHECK(parse_btf_map_def(u.btf(), var).map_extra == 7);
}

TEST_CASE("__array(values, ...) declares a map-in-map's inner map or a prog array's programs")
{
    Maps m;
    const auto inner_def = m.b.add_struct(
        "inner", 24,
        {m.uint_member("type", BPF_MAP_TYPE_ARRAY), m.uint_member("max_entries", 1), m.type_member("value", m.value)});
    const auto values = m.b.add_array(m.b.add_ptr(inner_def), m.index, 0);
    const auto outer = m.map(
        "outer",
        {m.uint_member("type", BPF_MAP_TYPE_HASH_OF_MAPS), m.type_member("key", m.int_id), {"values", values, 0}});
    const auto proto = m.b.add_func_proto(m.int_id, {});
    const auto progs = m.b.add_array(m.b.add_ptr(proto), m.index, 0);
    const auto jump = m.map(
        "jump", {m.uint_member("type", BPF_MAP_TYPE_PROG_ARRAY), m.uint_member("key_size", 4), {"values", progs, 0}});
    const auto btf = m.btf();
    const auto o = parse_btf_map_def(btf, outer);
    CHECK(o.value_size == 4);
    CHECK(o.has_values);
    REQUIRE(o.inner.size() == 1);
    CHECK(o.inner[0].name == "outer.inner");
    CHECK(o.inner[0].value_size == 8);
    const auto j = parse_btf_map_def(btf, jump);
    CHECK(j.value_size == 4);
    CHECK(j.has_values);
    CHECK(j.inner.empty());
}

TEST_CASE("__array(values, ...) that is not last, not of a map-in-map or prog array, or malformed is refused")
{
    Maps m;
    const auto inner_def = m.b.add_struct("", 8, {m.uint_member("type", BPF_MAP_TYPE_ARRAY)});
    const auto values = m.b.add_array(m.b.add_ptr(inner_def), m.index, 0);
    const auto sized = m.b.add_array(m.b.add_ptr(inner_def), m.index, 1);
    const auto of_int = m.b.add_array(m.b.add_ptr(m.int_id), m.index, 0);
    const auto of_value = m.b.add_array(m.int_id, m.index, 0);
    const auto in_map = [&](std::vector<BtfBuilder::Member> members) { return map_error(m, members); };
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS),
                  {"values", values, 0},
                  m.uint_member("max_entries", 1)}) == "section '.BTF': map 'm': 'values' member should be last");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_HASH), {"values", values, 0}}) ==
          "section '.BTF': map 'm': should be map-in-map or prog-array");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS),
                  m.uint_member("value_size", 8),
                  {"values", values, 0}}) == "section '.BTF': map 'm': conflicting value size 8 != 4");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", sized, 0}}) ==
          "section '.BTF': map 'm': map-in-map inner spec is not a zero-sized array");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", of_value, 0}}) ==
          "section '.BTF': map 'm': map-in-map inner def is of unexpected kind INT");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", of_int, 0}}) ==
          "section '.BTF': map 'm': map-in-map inner def is of unexpected kind INT");
    CHECK(in_map({m.uint_member("type", BPF_MAP_TYPE_PROG_ARRAY), {"values", values, 0}}) ==
          "section '.BTF': map 'm': prog-array value def is of unexpected kind STRUCT");
}

TEST_CASE("an inner map may not be pinned nor hold inner maps itself")
{
    Maps m;
    const auto pinned =
        m.b.add_struct("", 16, {m.uint_member("type", BPF_MAP_TYPE_ARRAY), m.uint_member("pinning", 1)});
    const auto deep_values = m.b.add_array(m.b.add_ptr(pinned), m.index, 0);
    const auto nested =
        m.b.add_struct("", 16, {m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", deep_values, 0}});
    const auto pinned_values = m.b.add_array(m.b.add_ptr(pinned), m.index, 0);
    const auto nested_values = m.b.add_array(m.b.add_ptr(nested), m.index, 0);
    const auto a = m.map("a", {m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", pinned_values, 0}});
    const auto b = m.map("b", {m.uint_member("type", BPF_MAP_TYPE_ARRAY_OF_MAPS), {"values", nested_values, 0}});
    const auto btf = m.btf();
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, a); }) ==
          "section '.BTF': map 'a.inner': inner def can't be pinned");
    CHECK(error_of([&] { (void)parse_btf_map_def(btf, b); }) ==
          "section '.BTF': map 'b.inner': multi-level inner maps not supported");
}

TEST_CASE("parse_btf_maps reads every entry of DATASEC .maps and checks each against its entry's size")
{
    Maps m;
    const auto a = m.map("a", {m.uint_member("type", BPF_MAP_TYPE_ARRAY)});
    const auto b = m.map("b", {m.uint_member("type", BPF_MAP_TYPE_HASH)});
    m.b.add_datasec(".maps", 0, {{a, 0, 8}, {b, 0, 4}});
    CHECK(error_of([&] { (void)parse_btf_maps(m.btf()); }) ==
          "section '.BTF': map 'b': definition of 8 bytes is larger than its DATASEC entry (4 bytes)");
    Maps ok;
    const auto c = ok.map("c", {ok.uint_member("type", BPF_MAP_TYPE_ARRAY)});
    ok.b.add_datasec(".maps", 0, {{c, 0, 8}});
    const auto maps = parse_btf_maps(ok.btf());
    REQUIRE(maps.size() == 1);
    CHECK(maps[0].name == "c");
    Small none;
    CHECK(parse_btf_maps(parse_btf(none.b.build())).empty());
}

// --- .BTF.ext ----------------------------------------------------------------------------------------------------

namespace {

// A .BTF with a FUNC and the strings .BTF.ext records name.
struct Ext {
    BtfBuilder b;
    uint32_t func = 0, sec = 0, other = 0, file = 0, line = 0, access = 0, thing = 0;
    BtfExtBuilder e;
    Ext()
    {
        const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
        func = b.add_func("prog", b.add_func_proto(i, {}));
        thing = b.add_struct("thing", 8, {{"a", i, 0}, {"b", i, 32}});
        sec = b.add_string("socket");
        other = b.add_string(".text");
        file = b.add_string("/src/prog.bpf.c");
        line = b.add_string("return 0;");
        access = b.add_string("0:1");
        e.add_func_info(sec, 0, func);
        e.add_line_info(sec, 0, file, line, 12, 5);
        e.add_line_info(sec, 16, file, line, 13, 1);
        e.add_core_relo(sec, 8, thing, access, BPF_CORE_FIELD_BYTE_OFFSET);
    }
    Btf btf() const { return parse_btf(b.build()); }
    std::string refused(const Bytes& bytes) const { return refusal_ext(bytes, btf()); }
};

} // namespace

TEST_CASE(".BTF.ext gives func_info, line_info and CO-RE relocations per ELF section")
{
    Ext x;
    x.e.add_func_info(x.other, 0, x.func);
    const auto btf = x.btf();
    const auto ext = parse_btf_ext(x.e.build(), btf);
    CHECK(ext.func_info_rec_size == 8);
    CHECK(ext.line_info_rec_size == 16);
    CHECK(ext.core_relo_rec_size == 16);
    REQUIRE(ext.func_info.size() == 2);
    CHECK(ext.func_info[0].section == "socket");
    CHECK(ext.func_info[1].section == ".text");
    CHECK(ext.func_info_of("socket")[0] == BtfFuncInfo{0, x.func});
    const auto lines = ext.line_info_of("socket");
    REQUIRE(lines.size() == 2);
    CHECK(btf.string(lines[1].file_name_off) == "/src/prog.bpf.c");
    CHECK(btf.string(lines[1].line_off) == "return 0;");
    CHECK(BPF_LINE_INFO_LINE_NUM(lines[0].line_col) == 12);
    CHECK(BPF_LINE_INFO_LINE_COL(lines[0].line_col) == 5);
    const auto relos = ext.core_relos_of("socket");
    REQUIRE(relos.size() == 1);
    CHECK(relos[0].insn_off == 8);
    CHECK(relos[0].type_id == x.thing);
    CHECK(relos[0].kind == BPF_CORE_FIELD_BYTE_OFFSET);
    CHECK(relos[0].access == "0:1");
    CHECK(relos[0].accessors == std::vector<uint32_t>{0, 1});
    CHECK(ext.core_relos_of(".text").empty());
    CHECK(ext.func_info_of("nowhere").empty());
}

TEST_CASE("a .BTF.ext header without the CO-RE part parses")
{
    Ext x;
    x.e.with_core_relo = false;
    const auto ext = parse_btf_ext(x.e.build(), x.btf());
    CHECK(ext.core_relos.empty());
    CHECK(ext.core_relo_rec_size == 0);
    CHECK(ext.func_info.size() == 1);
}

TEST_CASE("records larger than their structs are read for their known part, as the kernel allows")
{
    Ext x;
    x.e.func_info.record_size = 12;
    x.e.line_info.record_size = 24;
    x.e.core_relo.record_size = 20;
    const auto btf = x.btf();
    const auto ext = parse_btf_ext(x.e.build(), btf);
    CHECK(ext.func_info_rec_size == 12);
    CHECK(ext.func_info_of("socket")[0] == BtfFuncInfo{0, x.func});
    CHECK(ext.line_info_of("socket")[1].insn_off == 16);
    CHECK(ext.core_relos_of("socket")[0].access == "0:1");
}

TEST_CASE("the entries of a section named twice are joined")
{
    Ext x;
    x.e.add_func_info(x.other, 0, x.func);
    x.e.add_func_info(x.sec, 64, x.func);
    const auto ext = parse_btf_ext(x.e.build(), x.btf());
    REQUIRE(ext.func_info.size() == 2);
    REQUIRE(ext.func_info_of("socket").size() == 2);
    CHECK(ext.func_info_of("socket")[1].insn_off == 64);
}

TEST_CASE("func_info and line_info convert to one program's instruction indices")
{
    Ext x;
    x.e.add_func_info(x.sec, 40, x.func);
    x.e.add_line_info(x.sec, 40, x.file, x.line, 20, 0);
    x.e.add_line_info(x.sec, 56, x.file, x.line, 21, 0);
    const auto ext = parse_btf_ext(x.e.build(), x.btf());
    const auto funcs = program_func_info(ext, "socket", 40, 24);
    REQUIRE(funcs.size() == 1);
    CHECK(funcs[0].insn_off == 0);
    CHECK(funcs[0].type_id == x.func);
    const auto lines = program_line_info(ext, "socket", 40, 24);
    REQUIRE(lines.size() == 2);
    CHECK(lines[1].insn_off == 2);
    CHECK(BPF_LINE_INFO_LINE_NUM(lines[1].line_col) == 21);
    CHECK(program_line_info(ext, "socket", 0, 40).size() == 2); // the first program's lines: 0 and 16
    CHECK(program_func_info(ext, "elsewhere", 0, 64).empty());
}

TEST_CASE("a .BTF.ext header that is short, of another magic, version or flags, or of a bad length is refused")
{
    Ext x;
    CHECK(x.refused(Bytes(6)) == "section '.BTF.ext': header is truncated (6 bytes)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.magic = 0x1111; })) ==
          "section '.BTF.ext': bad magic 0x1111 (expected 0xeb9f)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.magic = 0x9feb; })) ==
          "section '.BTF.ext': magic 0x9feb is byte-swapped: big-endian BTF is not supported");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.version = 3; })) ==
          "section '.BTF.ext': version 3 is not supported (expected 1)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.flags = 2; })) ==
          "section '.BTF.ext': header flags 0x2 are not supported");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.hdr_len = 16; })) ==
          "section '.BTF.ext': header length 16 is shorter than 24 (func_info and line_info)");
    const auto size = x.e.build().size();
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.hdr_len = 4000; })) ==
          "section '.BTF.ext': header length 4000 is past the end of the section (" + std::to_string(size) + " bytes)");
}

TEST_CASE("a .BTF.ext subsection that is unaligned, past the end, without records or of a bad record size is "
          "refused")
{
    Ext x;
    const auto body = x.e.build().size() - 32;
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.func_info_off = 2; })) ==
          "section '.BTF.ext': func_info: offset 2 is not 4-byte aligned");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.line_info_len = 4000; })) ==
          "section '.BTF.ext': line_info: (offset 20, 4000 bytes) lies past the end of the section (" +
              std::to_string(body) + " bytes after the header)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.func_info_len = 2; })) ==
          "section '.BTF.ext': func_info: no record size (2 bytes)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.func_info_len = 4; })) ==
          "section '.BTF.ext': func_info: no records");
    Ext small;
    small.e.func_info.record_size = 4;
    small.e.func_info.entries[0].records[0].resize(1);
    CHECK(small.refused(small.e.build()) == "section '.BTF.ext': func_info: record size 4 is smaller than 8");
    Ext odd;
    odd.e.line_info.record_size = 18;
    CHECK(odd.refused(odd.e.build()) == "section '.BTF.ext': line_info: record size 18 is not a multiple of 4");
}

TEST_CASE("a .BTF.ext section entry that is cut short, unnamed, empty or longer than its subsection is refused")
{
    Ext x;
    // func_info: record size (4) + entry (8) + one record (8) = 20 bytes.
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.func_info_len = 10; })) ==
          "section '.BTF.ext': func_info: section entry #0: truncated (6 bytes left, an entry takes 8)");
    CHECK(x.refused(x.e.build([](BtfExtBuilder::Header& h) { h.func_info_len = 16; })) ==
          "section '.BTF.ext': func_info: section 'socket': 1 records of 8 bytes lie past the end of func_info (4 "
          "bytes left)");
    Ext unnamed;
    unnamed.e.func_info.entries[0].sec_name_off = 0;
    CHECK(unnamed.refused(unnamed.e.build()) == "section '.BTF.ext': func_info: section entry #0: names no section");
    Ext outside;
    outside.e.line_info.entries[0].sec_name_off = 0xffffff;
    CHECK(outside.refused(outside.e.build()) ==
          "section '.BTF.ext': line_info: section entry #0: name offset 0xffffff is outside the .BTF string section "
          "(" +
              std::to_string(outside.b.strings.size()) + " bytes)");
    Ext empty;
    empty.e.core_relo.entries[0].records.clear();
    CHECK(empty.refused(empty.e.build()) == "section '.BTF.ext': core_relo: section 'socket': no records");
}

TEST_CASE("a .BTF.ext section name or a CO-RE access string longer than 1024 bytes is refused")
{
    Ext x;
    const auto long_sec = x.b.add_string(std::string(1025, 's'));
    x.e.func_info.entries[0].sec_name_off = long_sec;
    CHECK(x.refused(x.e.build()) ==
          "section '.BTF.ext': func_info: section entry #0: section name is longer than 1024 bytes");
    Ext a;
    const auto long_access = a.b.add_string(std::string(1025, '0'));
    a.e.core_relo.entries[0].records[0][2] = long_access;
    CHECK(a.refused(a.e.build()) == "section '.BTF.ext': core_relo: section 'socket': record #0: access string at "
                                    "offset " +
                                        hex(long_access) + " is longer than 1024 bytes");
}

TEST_CASE("a .BTF.ext record whose insn_off is not on an instruction is refused")
{
    Ext x;
    x.e.line_info.entries[0].records[1][0] = 13;
    CHECK(x.refused(x.e.build()) ==
          "section '.BTF.ext': line_info: section 'socket': record #1: insn_off 13 is not a multiple of 8");
}

TEST_CASE("a func_info naming a missing type or a type that is no FUNC is refused")
{
    Ext x;
    const auto count = std::to_string(x.btf().types().size() - 1);
    x.e.func_info.entries[0].records[0][1] = 99;
    CHECK(x.refused(x.e.build()) ==
          "section '.BTF.ext': func_info: section 'socket': record #0: type 99 of " + count + " does not exist");
    x.e.func_info.entries[0].records[0][1] = 1;
    CHECK(x.refused(x.e.build()) ==
          "section '.BTF.ext': func_info: section 'socket': record #0: type [1] INT 'int' is not a FUNC");
}

TEST_CASE("a line_info naming strings outside the .BTF string section is refused")
{
    Ext x;
    const auto strings = std::to_string(x.b.strings.size());
    x.e.line_info.entries[0].records[0][1] = 0x10000;
    CHECK(x.refused(x.e.build()) == "section '.BTF.ext': line_info: section 'socket': record #0: file name offset "
                                    "0x10000 is outside the .BTF string section (" +
                                        strings + " bytes)");
    x.e.line_info.entries[0].records[0][1] = x.file;
    x.e.line_info.entries[0].records[0][2] = 0x10000;
    CHECK(x.refused(x.e.build()) == "section '.BTF.ext': line_info: section 'socket': record #0: line offset "
                                    "0x10000 is outside the .BTF string section (" +
                                        strings + " bytes)");
}

TEST_CASE("a CO-RE relocation naming a missing type, an unknown kind or a bad access string offset is refused")
{
    Ext x;
    const auto where = std::string("section '.BTF.ext': core_relo: section 'socket': record #0: ");
    auto& r = x.e.core_relo.entries[0].records[0];
    r[1] = 99;
    CHECK(x.refused(x.e.build()) ==
          where + "type 99 of " + std::to_string(x.btf().types().size() - 1) + " does not exist");
    r[1] = x.thing;
    r[3] = 13;
    CHECK(x.refused(x.e.build()) == where + "kind 13 is not a bpf_core_relo_kind (0 to 12)");
    r[3] = BPF_CORE_FIELD_BYTE_OFFSET;
    r[2] = 0x10000;
    CHECK(x.refused(x.e.build()) == where + "access string offset 0x10000 is outside the .BTF string section (" +
                                        std::to_string(x.b.strings.size()) + " bytes)");
}

TEST_CASE("CO-RE access strings are decimal indices joined by ':', \"0\" for types, one index for enum values")
{
    const auto with = [](const std::string& access, uint32_t kind) {
        Ext x;
        x.e.core_relo.entries[0].records[0][2] = x.b.add_string(access);
        x.e.core_relo.entries[0].records[0][3] = kind;
        return x.refused(x.e.build());
    };
    const auto where = std::string("section '.BTF.ext': core_relo: section 'socket': record #0: ");
    const auto bad = [&](const std::string& s) {
        return where + "access string '" + s + "' is not up to 64 decimal indices joined by ':'";
    };
    CHECK(with("0:1:2:3", BPF_CORE_FIELD_BYTE_OFFSET) == "parsed");
    CHECK(with("0", BPF_CORE_TYPE_SIZE) == "parsed");
    CHECK(with("3", BPF_CORE_ENUMVAL_VALUE) == "parsed");
    for (const auto* s : {":0", "0:", "0::1", "a", "0:x", "-1", "0 1", "2147483648"})
        CHECK(with(s, BPF_CORE_FIELD_BYTE_OFFSET) == bad(s));
    std::string long_spec = "0";
    for (int i = 0; i < 64; ++i)
        long_spec += ":1";
    CHECK(with(long_spec, BPF_CORE_FIELD_EXISTS) ==
          where + "access string '" + long_spec.substr(0, 80) + "...' is not up to 64 decimal indices joined by ':'");
    CHECK(with("0:1", BPF_CORE_TYPE_ID_LOCAL) == where + "TYPE_ID_LOCAL access string '0:1' is not \"0\"");
    CHECK(with("1", BPF_CORE_TYPE_MATCHES) == where + "TYPE_MATCHES access string '1' is not \"0\"");
    CHECK(with("0:1", BPF_CORE_ENUMVAL_EXISTS) == where + "ENUMVAL_EXISTS access string '0:1' is not one index");
}

TEST_CASE("an empty CO-RE access string is refused")
{
    Ext x;
    x.e.core_relo.entries[0].records[0][2] = 0; // the empty name at offset 0
    CHECK(x.refused(x.e.build()) == "section '.BTF.ext': core_relo: section 'socket': record #0: access string '' "
                                    "is not up to 64 decimal indices joined by ':'");
}

// --- hostile sizes -------------------------------------------------------------------------------------------------

TEST_CASE("hostile counts parse in linear time: structs of 65535 members, a chain of 100000 typedefs")
{
    // 65535 members of 12 bytes each, the largest vlen, 16 times: a 14 MB blob. Quadratic, this would take hours;
    // the bound leaves room for a loaded machine.
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    std::vector<BtfBuilder::Member> members(65535, {"", i, 0});
    for (int k = 0; k < 16; ++k)
        b.add_struct("", 4, members);
    uint32_t prev = i;
    for (int k = 0; k < 100000; ++k)
        prev = b.add_typedef("t", prev);
    const auto bytes = b.build();
    const auto start = std::chrono::steady_clock::now();
    const auto btf = parse_btf(bytes);
    CHECK(btf.type_size(prev) == 4);
    CHECK(btf.resolve(prev) == i);
    CHECK(seconds_since(start) < 30.0 * kSlowdown);
}
