// Unit tests of loader/plan (make_plan, plan_object), loader/load's relocate() and loader/btf's minimal BTF blob.
#include <doctest/doctest.h>

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cstring>
#include <set>

#include "bpf/sockredir_shared.h"
#include "elf/object.hpp"
#include "loader/app/load.hpp"
#include "loader/app/plan.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "tests/elf_builder.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::ebpf;
using namespace sockredir::app;
using namespace sockredir::test;

namespace {

LoadPlan plan_of(const Bytes& bytes, uint32_t max_sockets = 0)
{
    return plan_object(bytes, {max_sockets});
}

MapRecipe& map_named(ObjectRecipe& recipe, const std::string& name)
{
    for (auto& m : recipe.maps)
        if (m.name == name)
            return m;
    throw std::runtime_error("test: no map " + name);
}

} // namespace

// --- the real object ------------------------------------------------------------------------------------------

TEST_CASE("the real object plans into a sockops and an sk_msg program and the four maps")
{
    const auto plan = plan_of(real_object());
    const auto& obj = plan.object;
    REQUIRE(plan.maps.size() == 4);
    REQUIRE(plan.programs.size() == 2);

    CHECK(plan.maps[plan.sock_hash].spec.name == SOCKREDIR_MAP_SOCKS);
    CHECK(plan.maps[plan.counters].spec.name == SOCKREDIR_MAP_COUNTERS);
    CHECK(plan.maps[plan.config].spec.name == SOCKREDIR_MAP_CONFIG);
    CHECK(plan.maps[plan.path_state].spec.name == SOCKREDIR_MAP_PATH);
    CHECK(std::set<size_t>{plan.sock_hash, plan.counters, plan.config, plan.path_state}.size() == 4);
    for (size_t i = 0; i < plan.maps.size(); ++i) {
        CAPTURE(plan.maps[i].spec.name);
        CHECK(plan.maps[i].spec.name == obj.maps[i].name);
        // Only socket storage needs BTF.
        CHECK(plan.maps[i].needs_btf == (plan.maps[i].spec.type == BPF_MAP_TYPE_SK_STORAGE));
    }
    CHECK(plan.maps[plan.sock_hash].spec.max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);

    const auto& sockops = plan.programs[plan.sockops];
    CHECK(obj.programs[sockops.program].name == SOCKREDIR_PROG_SOCKOPS);
    CHECK(sockops.prog_type == BPF_PROG_TYPE_SOCK_OPS);
    CHECK(sockops.attach_type == BPF_CGROUP_SOCK_OPS);
    CHECK(sockops.expected_attach_type == 0);

    const auto& msg = plan.programs[plan.msg];
    CHECK(obj.programs[msg.program].name == SOCKREDIR_PROG_MSG);
    CHECK(msg.prog_type == BPF_PROG_TYPE_SK_MSG);
    CHECK(msg.attach_type == BPF_SK_MSG_VERDICT);
    CHECK(msg.expected_attach_type == BPF_SK_MSG_VERDICT);
}

TEST_CASE("--max-sockets changes the sockhash's max_entries and nothing else")
{
    const Bytes bytes = real_object();
    const auto base = plan_of(bytes);
    const auto plan = plan_of(bytes, 1234);
    CHECK(plan.maps[plan.sock_hash].spec.max_entries == 1234);
    CHECK(base.maps[base.sock_hash].spec.max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);
    for (size_t i = 0; i < plan.maps.size(); ++i) {
        if (i == plan.sock_hash)
            continue;
        CHECK(plan.maps[i].spec.max_entries == base.maps[i].spec.max_entries);
    }
    // The object model itself still states the compiled-in size.
    CHECK(plan.object.find_map(SOCKREDIR_MAP_SOCKS)->max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);
    CHECK(plan_of(bytes, 1U << 24).maps[plan.sock_hash].spec.max_entries == 1U << 24);
}

TEST_CASE("--max-sockets above the sockredir limit is refused")
{
    CHECK_THROWS_WITH_AS(plan_of(real_object(), (1U << 24) + 1),
                         doctest::Contains("--max-sockets 16777217 exceeds 16777216"), Error);
    CHECK_THROWS_WITH_AS(plan_of(real_object(), UINT32_MAX), doctest::Contains("--max-sockets 4294967295 exceeds"),
                         Error);
}

TEST_CASE("relocate patches each map reference to src_reg BPF_PSEUDO_MAP_FD and imm the map's fd")
{
    const auto plan = plan_of(real_object());
    // Fake descriptors: relocate only writes numbers, it makes no syscalls.
    std::vector<int> fds;
    for (size_t i = 0; i < plan.maps.size(); ++i)
        fds.push_back(100 + static_cast<int>(i) * 7);
    for (const auto& pp : plan.programs) {
        const auto& spec = plan.object.programs[pp.program];
        CAPTURE(spec.name);
        const auto insns = relocate(spec, fds);
        REQUIRE(insns.size() == spec.insns.size());
        std::set<size_t> patched;
        for (const auto& r : spec.relocations) {
            CHECK(insns[r.insn].code == (BPF_LD | BPF_IMM | BPF_DW));
            CHECK(insns[r.insn].src_reg == BPF_PSEUDO_MAP_FD);
            CHECK(insns[r.insn].dst_reg == spec.insns[r.insn].dst_reg);
            CHECK(insns[r.insn].imm == fds[r.map]);
            CHECK(insns[r.insn + 1].imm == 0);
            patched.insert(r.insn);
            patched.insert(r.insn + 1);
        }
        REQUIRE_FALSE(patched.empty());
        for (size_t i = 0; i < insns.size(); ++i)
            if (patched.count(i) == 0)
                CHECK_MESSAGE(std::memcmp(&insns[i], &spec.insns[i], sizeof(bpf_insn)) == 0, "instruction " << i);
    }
}

TEST_CASE("relocate refuses a relocation naming a map it has no fd for")
{
    const auto plan = plan_of(real_object());
    const auto& spec = plan.object.programs[plan.programs[plan.sockops].program];
    CHECK_THROWS_WITH_AS(relocate(spec, {3}), doctest::Contains("program 'sockredir_sockops': relocation out of range"),
                         Error);
}

TEST_CASE("a built sockredir-shaped object plans like the real one")
{
    const auto plan = plan_of(ObjectRecipe{}.build());
    CHECK(plan.maps.size() == 4);
    CHECK(plan.programs.size() == 2);
    CHECK(plan.programs[plan.sockops].prog_type == BPF_PROG_TYPE_SOCK_OPS);
    CHECK(plan.programs[plan.msg].prog_type == BPF_PROG_TYPE_SK_MSG);
}

// --- what the planner refuses ----------------------------------------------------------------------------------

TEST_CASE("an object missing one of the four required maps is refused")
{
    for (const char* name : {SOCKREDIR_MAP_SOCKS, SOCKREDIR_MAP_COUNTERS, SOCKREDIR_MAP_CONFIG, SOCKREDIR_MAP_PATH}) {
        CAPTURE(name);
        ObjectRecipe recipe;
        std::erase_if(recipe.maps, [&](const MapRecipe& m) { return m.name == name; });
        for (auto& p : recipe.programs)
            std::erase(p.map_refs, std::string(name));
        const std::string expected = std::string("section 'maps': map '") + name + "' is missing";
        CHECK_THROWS_WITH_AS(plan_of(recipe.build()), doctest::Contains(expected.c_str()), Error);
    }
}

TEST_CASE("a map sockredir does not know is refused")
{
    ObjectRecipe recipe;
    recipe.maps.push_back({"extra", {BPF_MAP_TYPE_HASH, 4, 4, 16, 0}});
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'extra' (BPF_MAP_TYPE_HASH) is not one sockredir "
                                           "knows"),
                         Error);
}

TEST_CASE("a map defined twice under the same name is refused")
{
    // Two definitions would become two kernel maps, and the programs' references would be split between them.
    ObjectRecipe recipe;
    recipe.maps.push_back(recipe.maps[2]);
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()), doctest::Contains("section 'maps': map 'config' is defined twice"),
                         Error);
}

TEST_CASE("a required map of the wrong type is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.type = BPF_MAP_TYPE_SOCKMAP;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'sock_hash': type BPF_MAP_TYPE_SOCKMAP, expected "
                                           "BPF_MAP_TYPE_SOCKHASH"),
                         Error);
}

TEST_CASE("a required map with the wrong key or value size is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.key_size = 44;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'sock_hash': key size 44, expected 48"), Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_COUNTERS).def.value_size = 4;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'counters': value size 4, expected 8"), Error);
}

TEST_CASE("a required map with invalid max_entries is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_COUNTERS).def.max_entries = SOCKREDIR_COUNTER_MAX - 1;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'counters': max_entries 4 is not valid for this map"),
                         Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_PATH).def.max_entries = 1;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'path_state': max_entries 1 is not valid"), Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.max_entries = (1U << 24) + 1;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'sock_hash': max_entries 16777217 exceeds 16777216"),
                         Error);
}

TEST_CASE("a required map with the wrong flags is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_PATH).def.map_flags = 0;
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'maps': map 'path_state': flags 0, expected 1"), Error);
}

TEST_CASE("a program in an unknown program section is refused")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"xdp", "xdp_prog", {}});
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'xdp': program 'xdp_prog' has an unknown program type (supported "
                                           "sections: sockops, sk_msg)"),
                         Error);
}

TEST_CASE("two programs of the same type are refused")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"sockops", "second_sockops", {SOCKREDIR_MAP_COUNTERS}});
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'sockops': a second program of this type ('second_sockops')"),
                         Error);
    recipe = ObjectRecipe{};
    recipe.programs.push_back({"sk_msg", "second_msg", {}});
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()),
                         doctest::Contains("section 'sk_msg': a second program of this type ('second_msg')"), Error);
}

TEST_CASE("an object without a sockops or without an sk_msg program is refused")
{
    ObjectRecipe recipe;
    recipe.programs.erase(recipe.programs.begin());
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()), doctest::Contains("ELF file: no 'sockops' program section"), Error);
    recipe = ObjectRecipe{};
    recipe.programs.pop_back();
    CHECK_THROWS_WITH_AS(plan_of(recipe.build()), doctest::Contains("ELF file: no 'sk_msg' program section"), Error);
}

TEST_CASE("make_plan refuses a relocation naming a map index the object does not have")
{
    auto obj = elf::parse_object(ObjectRecipe{}.build());
    obj.programs[1].relocations[0].map = 9;
    CHECK_THROWS_WITH_AS(make_plan(obj, {}), doctest::Contains("section 'sk_msg': relocation names map #9 of 4"),
                         Error);
}

TEST_CASE("map_type_name names the map types of the plan and numbers the rest")
{
    CHECK(map_type_name(BPF_MAP_TYPE_SOCKHASH) == "BPF_MAP_TYPE_SOCKHASH");
    CHECK(map_type_name(BPF_MAP_TYPE_SK_STORAGE) == "BPF_MAP_TYPE_SK_STORAGE");
    CHECK(map_type_name(BPF_MAP_TYPE_PERCPU_ARRAY) == "BPF_MAP_TYPE_PERCPU_ARRAY");
    CHECK(map_type_name(BPF_MAP_TYPE_ARRAY) == "BPF_MAP_TYPE_ARRAY");
    CHECK(map_type_name(9999) == "9999");
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
