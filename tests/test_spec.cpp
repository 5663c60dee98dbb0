// Unit tests of the generic loader's open phase (loader/ebpf/spec: CollectionSpec by name), relocate() and the
// minimal BTF blob. No syscall: relocate() only writes numbers.
#include <doctest/doctest.h>

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cstring>
#include <set>

#include "elf/object.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/spec.hpp"
#include "tests/elf_builder.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::ebpf;
using namespace sockredir::test;

TEST_CASE("open_object finds every map and program by name, with the types their sections give")
{
    const auto spec = open_object(ObjectRecipe{}.build());
    const auto object = elf::parse_object(ObjectRecipe{}.build());
    REQUIRE(spec.maps.size() == object.maps.size());
    for (const auto& m : object.maps) {
        CAPTURE(m.name);
        const auto& s = spec.maps.at(m.name);
        CHECK(s.type == m.type);
        CHECK(s.key_size == m.key_size);
        CHECK(s.value_size == m.value_size);
        CHECK(s.max_entries == m.max_entries);
        CHECK(s.flags == m.flags);
        CHECK(s.contents.empty());
    }
    for (const auto& p : object.programs) {
        CAPTURE(p.name);
        const auto& s = spec.programs.at(p.name);
        CHECK(s.section == p.section);
        CHECK(s.insns.size() == p.insns.size());
        REQUIRE(s.maps.size() == p.relocations.size());
        for (size_t i = 0; i < s.maps.size(); ++i) {
            CHECK(s.maps[i].insn == p.relocations[i].insn);
            CHECK(s.maps[i].map == object.maps[p.relocations[i].map].name);
        }
    }
    CHECK(spec.license == object.license);
}

TEST_CASE("at() names what is not in the object; find() and contains() say it without throwing")
{
    const auto spec = open_object(ObjectRecipe{}.build());
    CHECK_THROWS_WITH_AS(spec.maps.at("nope"), "map 'nope': not in the object", Error);
    CHECK_THROWS_WITH_AS(spec.programs.at("nope"), "program 'nope': not in the object", Error);
    CHECK(spec.maps.find("nope") == nullptr);
    CHECK_FALSE(spec.programs.contains("nope"));
}

TEST_CASE("set_max_entries changes one map by name and refuses a map the object lacks")
{
    auto spec = open_object(ObjectRecipe{}.build());
    const auto before = spec.maps.at("counters").max_entries;
    spec.set_max_entries("sock_hash", 77);
    CHECK(spec.maps.at("sock_hash").max_entries == 77);
    CHECK(spec.maps.at("counters").max_entries == before);
    CHECK_THROWS_WITH_AS(spec.set_max_entries("nope", 1), "map 'nope': not in the object", Error);
}

TEST_CASE("initial contents must match the map's key and value size; a key set twice keeps the last value")
{
    MapSpec m;
    m.name = "m";
    m.key_size = 4;
    m.value_size = 8;
    m.set(uint32_t{1}, uint64_t{10});
    m.set(uint32_t{2}, uint64_t{20});
    m.set(uint32_t{1}, uint64_t{11});
    REQUIRE(m.contents.size() == 2);
    uint64_t v = 0;
    std::memcpy(&v, m.contents[0].value.data(), sizeof v);
    CHECK(v == 11);
    CHECK_THROWS_WITH_AS(m.set(uint64_t{1}, uint64_t{1}), "map 'm': an entry of 8+8 bytes, the map holds 4+8", Error);
}

TEST_CASE("a program in a section the loader does not know is refused by name")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"xdp", "xdp_prog", {}});
    CHECK_THROWS_WITH_AS(
        open_object(recipe.build()),
        doctest::Contains("section 'xdp': program 'xdp_prog' has a program type this loader does not "
                          "support (sections: sockops, sk_msg, cgroup/setsockopt, cgroup/getsockopt, tc, tp_btf/NAME, fentry/NAME, fexit/NAME, "
                          "iter/NAME)"),
        Error);
}

TEST_CASE("a map type the loader cannot create from a definition alone is refused by name")
{
    ObjectRecipe recipe;
    recipe.maps.push_back({"jumps", {BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 8, 0}});
    CHECK_THROWS_WITH_AS(open_object(recipe.build()),
                         "map 'jumps': type BPF_MAP_TYPE_PROG_ARRAY is not supported by this loader", Error);
    recipe = ObjectRecipe{};
    recipe.maps.push_back({"odd", {9999, 4, 4, 8, 0}});
    CHECK_THROWS_WITH_AS(open_object(recipe.build()), "map 'odd': type 9999 is not supported by this loader", Error);
}

TEST_CASE("make_collection_spec refuses a relocation naming a map index the object does not have")
{
    auto obj = elf::parse_object(ObjectRecipe{}.build());
    obj.programs[1].relocations[0].map = 9;
    const std::string expected = "section 'sk_msg': relocation names map #9 of " + std::to_string(obj.maps.size());
    CHECK_THROWS_WITH_AS(make_collection_spec(obj), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("relocate patches each map reference to src_reg BPF_PSEUDO_MAP_FD and imm the named map's fd")
{
    const auto spec = open_object(real_object());
    // Fake descriptors: relocate only writes numbers, it makes no syscalls.
    std::unordered_map<std::string, int> fds;
    int next = 100;
    for (const auto& m : spec.maps)
        fds[m.name] = next += 7;
    for (const auto& p : spec.programs) {
        CAPTURE(p.name);
        const auto insns = relocate(p, fds);
        REQUIRE(insns.size() == p.insns.size());
        std::set<size_t> patched;
        for (const auto& r : p.maps) {
            CHECK(insns[r.insn].code == (BPF_LD | BPF_IMM | BPF_DW));
            CHECK(insns[r.insn].src_reg == BPF_PSEUDO_MAP_FD);
            CHECK(insns[r.insn].dst_reg == p.insns[r.insn].dst_reg);
            CHECK(insns[r.insn].imm == fds.at(r.map));
            CHECK(insns[r.insn + 1].imm == 0);
            patched.insert(r.insn);
            patched.insert(r.insn + 1);
        }
        REQUIRE_FALSE(patched.empty());
        for (size_t i = 0; i < insns.size(); ++i)
            if (patched.count(i) == 0)
                CHECK_MESSAGE(std::memcmp(&insns[i], &p.insns[i], sizeof(bpf_insn)) == 0, "instruction " << i);
    }
}

TEST_CASE("relocate refuses a reference to a map that was not created")
{
    const auto spec = open_object(real_object());
    CHECK_THROWS_WITH_AS(relocate(spec.programs.at("sockredir_sockops"), {{"config", 3}}),
                         doctest::Contains("program 'sockredir_sockops': refers to map '"), Error);
}

TEST_CASE("a program the verifier rejects fails by its name, with the verifier's log in the error")
{
    test::FakeKernel kernel;
    kernel.helper_answers[{BPF_PROG_TYPE_SK_MSG, BPF_FUNC_msg_redirect_hash}] = {
        EACCES, "12: (85) call bpf_msg_redirect_hash#71\nR2 type=scalar expected=map_ptr\n"};
    try {
        load_collection(open_object(real_object()));
        FAIL("loaded");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) ==
              "the verifier rejected program 'sockredir_msg' (section 'sk_msg'): Permission denied");
        CHECK(e.call() == "BPF_PROG_LOAD");
        CHECK(e.code() == EACCES);
        CHECK(e.log() == "12: (85) call bpf_msg_redirect_hash#71\nR2 type=scalar expected=map_ptr\n");
    }
    // Loaded without the log first, then once more with it.
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_SK_MSG) == 2);
}

TEST_CASE("a program load that fails once loads on the retry")
{
    test::FakeKernel kernel;
    kernel.transient_failures = 1;
    // sock_ops and sk_msg (their CO-RE resolves against this host's kernel BTF).
    const std::vector<std::string> names{"sockredir_sockops", "sockredir_msg"};
    const auto c = load_collection(open_object(real_object()).subset(names));
    CHECK(c.programs.size() == 2);
}

// --- minimal BTF -------------------------------------------------------------------------------------------------

TEST_CASE("minimal_btf holds one signed 32-bit INT named 'int' in the kernel's BTF layout")
{
    const auto blob = minimal_btf();
    REQUIRE(blob.size() >= sizeof(btf_header));
    const auto h = load<btf_header>(blob, 0);
    CHECK(h.magic == BTF_MAGIC);
    CHECK(h.version == BTF_VERSION);
    CHECK(h.flags == 0);
    CHECK(h.hdr_len == sizeof(btf_header));
    CHECK(h.type_off == 0);
    CHECK(h.type_len == sizeof(btf_type) + sizeof(uint32_t));
    CHECK(h.str_off == h.type_off + h.type_len);
    REQUIRE(blob.size() == uint64_t{h.hdr_len} + h.str_off + h.str_len);

    // Type id 1 is the first type record.
    CHECK(kBtfIntTypeId == 1);
    const uint64_t types = h.hdr_len + h.type_off;
    const auto t = load<btf_type>(blob, types);
    CHECK(BTF_INFO_KIND(t.info) == BTF_KIND_INT);
    CHECK(BTF_INFO_VLEN(t.info) == 0);
    CHECK(BTF_INFO_KFLAG(t.info) == 0);
    CHECK(t.size == 4);
    const auto int_data = load<uint32_t>(blob, types + sizeof(btf_type));
    CHECK(BTF_INT_ENCODING(int_data) == BTF_INT_SIGNED);
    CHECK(BTF_INT_OFFSET(int_data) == 0);
    CHECK(BTF_INT_BITS(int_data) == 32);

    // The string section starts with the empty string and names the type "int".
    const uint64_t strings = h.hdr_len + h.str_off;
    CHECK(load<char>(blob, strings) == '\0');
    CHECK(load<char>(blob, strings + h.str_len - 1) == '\0');
    REQUIRE(t.name_off + 4 <= h.str_len);
    std::string name;
    for (uint64_t at = strings + t.name_off; load<char>(blob, at) != '\0'; ++at)
        name.push_back(load<char>(blob, at));
    CHECK(name == "int");
}
