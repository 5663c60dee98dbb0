// Writes seed inputs for fuzz_btf: the .BTF and .BTF.ext of the clang objects given on the command line, and blobs
// built with tests/btf_builder (every kind, map definitions, DATASECs, .BTF.ext of every record kind).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "elf/reader.hpp"
#include "tests/btf_builder.hpp"
#include "tests/fuzz/btf_harness.hpp"

using namespace sockredir;
using namespace sockredir::test;

namespace {

void write(const std::string& dir, const std::string& name, const Bytes& btf, const Bytes& ext = {})
{
    const auto bytes = make_btf_fuzz_input(btf, ext);
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write " + dir + "/" + name);
}

Bytes read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot open " + path);
    const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Bytes out(chars.size());
    for (size_t i = 0; i < chars.size(); ++i)
        out[i] = static_cast<std::byte>(chars[i]);
    return out;
}

Bytes section_bytes(const elf::ElfFile& file, const char* name)
{
    const auto* s = file.find_section(name);
    if (s == nullptr)
        return {};
    return Bytes(s->data.begin(), s->data.end());
}

// One type of every kind, referring to each other as C declarations do.
BtfBuilder every_kind()
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto p = b.add_ptr(i);
    const auto a = b.add_array(i, i, 4);
    const auto s = b.add_struct("s", 24, {{"x", i, 0}, {"bits", i, 3u << 24 | 32}, {"arr", a, 64}}, true);
    b.add_union("u", 8, {{"p", p, 0}, {"", s, 0}});
    b.add_enum("e", 4, {{"A", -1}, {"B", 2}}, true);
    b.add_fwd("later", true);
    const auto td = b.add_typedef("td", b.add_const(b.add_volatile(i)));
    b.add_restrict(p);
    const auto proto = b.add_func_proto(td, {{"a", i}, {"", 0}});
    const auto func = b.add_func("fn", proto);
    const auto var = b.add_var("v", i);
    b.add_datasec(".data", 4, {{var, 0, 4}});
    b.add_float("double", 8);
    b.add_decl_tag("tag", s, 1);
    b.add_decl_tag("ftag", func, 0);
    b.add_type_tag("user", i, true);
    b.add_enum64("e64", 8, {{"BIG", int64_t{1} << 40}});
    return b;
}

// Two BTF-defined maps in DATASEC .maps (one map-in-map), as __uint / __type / __array write them.
BtfBuilder maps()
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto index = b.add_int("__ARRAY_SIZE_TYPE__", 4, 0, 32);
    const auto uint_member = [&](const char* name, uint32_t n) {
        return BtfBuilder::Member{name, b.add_ptr(b.add_array(i, index, n)), 0};
    };
    const auto key = b.add_struct("key", 8, {{"a", i, 0}, {"b", i, 32}});
    const auto def = b.add_struct("", 40,
                                  {uint_member("type", 1),
                                   uint_member("max_entries", 64),
                                   {"key", b.add_ptr(key), 128},
                                   {"value", b.add_ptr(i), 192},
                                   uint_member("pinning", 1)});
    const auto hash = b.add_var("hash", def);
    const auto inner = b.add_struct("inner", 16, {uint_member("type", 2), uint_member("max_entries", 1)});
    const auto outer_def = b.add_struct("", 24,
                                        {uint_member("type", 12),
                                         uint_member("key_size", 4),
                                         {"values", b.add_array(b.add_ptr(inner), index, 0), 128}});
    const auto outer = b.add_var("outer", outer_def);
    b.add_datasec(".maps", 0, {{hash, 0, 40}, {outer, 0, 24}});
    return b;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR [OBJECT.o...]\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    for (int i = 2; i < argc; ++i) {
        const auto file = read_file(argv[i]);
        const auto elf = elf::read(file);
        std::string name = argv[i];
        name = name.substr(name.find_last_of('/') + 1);
        write(dir, "seed-" + name, section_bytes(elf, ".BTF"), section_bytes(elf, ".BTF.ext"));
    }

    auto kinds = every_kind();
    write(dir, "seed-every-kind", kinds.build());
    write(dir, "seed-maps", maps().build());

    // .BTF.ext of every record kind against the every-kind blob.
    const auto sec = kinds.add_string("socket");
    const auto file = kinds.add_string("/src/x.bpf.c");
    const auto line = kinds.add_string("return 0;");
    const auto access = kinds.add_string("0:2:1");
    const auto type_access = kinds.add_string("0");
    const auto parsed = elf::parse_btf(kinds.build());
    const auto func = *parsed.find(BTF_KIND_FUNC, "fn");
    const auto st = *parsed.find(BTF_KIND_STRUCT, "s");
    BtfExtBuilder e;
    e.add_func_info(sec, 0, func);
    e.add_line_info(sec, 0, file, line, 10, 2);
    e.add_line_info(sec, 8, file, line, 11, 4);
    e.add_core_relo(sec, 8, st, access, BPF_CORE_FIELD_BYTE_OFFSET);
    e.add_core_relo(sec, 16, st, type_access, BPF_CORE_TYPE_SIZE);
    write(dir, "seed-ext", kinds.build(), e.build());
    BtfExtBuilder old = e;
    old.with_core_relo = false;
    write(dir, "seed-ext-no-core", kinds.build(), old.build());

    // A longer header and strings before types: parsed to the same model, encoded in clang's layout.
    const auto types = kinds.types_bytes();
    btf_header h = kinds.header();
    h.hdr_len = 32;
    h.str_off = 0;
    h.type_off = static_cast<uint32_t>((kinds.strings.size() + 3) / 4 * 4);
    Bytes moved(h.hdr_len + h.type_off + types.size());
    std::memcpy(moved.data(), &h, sizeof h);
    std::memcpy(moved.data() + h.hdr_len, kinds.strings.data(), kinds.strings.size());
    std::memcpy(moved.data() + h.hdr_len + h.type_off, types.data(), types.size());
    write(dir, "seed-layout", moved);
    return 0;
}
