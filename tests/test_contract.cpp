// Unit tests of loader/app/contract (check_contract, sockredir_spec): the shapes sockredir relies on, by name.
#include <doctest/doctest.h>

#include <linux/bpf.h>

#include <cstring>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/base/error.hpp"
#include "tests/elf_builder.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::app;
using namespace sockredir::test;

namespace {

ebpf::CollectionSpec spec_of(const Bytes& bytes, uint32_t max_sockets = 0)
{
    return sockredir_spec(bytes, {max_sockets, 0, {}});
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

TEST_CASE("the real object opens into its seven maps, the programs sockredir attaches and the two that hand "
          "sockets back")
{
    const auto spec = spec_of(real_object());
    CHECK(spec.maps.size() == 7);
    CHECK(spec.programs.size() == 9);
    CHECK(spec.programs.at(SOCKREDIR_PROG_SETSOCKOPT).type == BPF_PROG_TYPE_CGROUP_SOCKOPT);
    CHECK(spec.programs.at(SOCKREDIR_PROG_SETSOCKOPT).expected_attach_type == BPF_CGROUP_SETSOCKOPT);
    CHECK(spec.programs.at(SOCKREDIR_PROG_SETSOCKOPT).attach_type == BPF_CGROUP_SETSOCKOPT);
    CHECK(spec.programs.at(SOCKREDIR_PROG_GETSOCKOPT).expected_attach_type == BPF_CGROUP_GETSOCKOPT);
    CHECK(spec.programs.at(SOCKREDIR_PROG_GETSOCKOPT).attach_type == BPF_CGROUP_GETSOCKOPT);
    CHECK(spec.maps.at(SOCKREDIR_MAP_FLOWS).type == BPF_MAP_TYPE_HASH);
    CHECK(spec.maps.at(SOCKREDIR_MAP_LEARNED).type == BPF_MAP_TYPE_LRU_HASH);
    CHECK(spec.programs.at(SOCKREDIR_PROG_OBSERVE_TP).type == BPF_PROG_TYPE_TRACING);
    CHECK(spec.programs.at(SOCKREDIR_PROG_OBSERVE_TP).attach_to == "sock_recv_length");
    CHECK(spec.programs.at(SOCKREDIR_PROG_OBSERVE_FEXIT).attach_to == "sock_recvmsg");
    CHECK(spec.programs.at(SOCKREDIR_PROG_OBSERVE_MAP).attach_to == "tcp_bpf_recvmsg");
    CHECK(spec.programs.at(SOCKREDIR_PROG_OBSERVE_MAP).expected_attach_type == BPF_TRACE_FEXIT);
    CHECK(spec.maps.at(SOCKREDIR_MAP_SOCKS).type == BPF_MAP_TYPE_SOCKHASH);
    CHECK(spec.maps.at(SOCKREDIR_MAP_COUNTERS).type == BPF_MAP_TYPE_PERCPU_ARRAY);
    CHECK(spec.maps.at(SOCKREDIR_MAP_CONFIG).type == BPF_MAP_TYPE_ARRAY);
    CHECK(spec.maps.at(SOCKREDIR_MAP_SOCK_STATE).type == BPF_MAP_TYPE_SK_STORAGE);
    // Socket storage needs BTF; the hash maps carry their key and value types for bpftool.
    for (const auto& m : spec.maps) {
        CAPTURE(m.name);
        CHECK(m.needs_btf == (m.type == BPF_MAP_TYPE_SK_STORAGE));
    }
    CHECK(spec.maps.at(SOCKREDIR_MAP_SOCKS).max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);

    const auto& sockops = spec.programs.at(SOCKREDIR_PROG_SOCKOPS);
    CHECK(sockops.type == BPF_PROG_TYPE_SOCK_OPS);
    CHECK(sockops.attach_type == BPF_CGROUP_SOCK_OPS);
    CHECK(sockops.expected_attach_type == 0);
    const auto& msg = spec.programs.at(SOCKREDIR_PROG_MSG);
    CHECK(msg.type == BPF_PROG_TYPE_SK_MSG);
    CHECK(msg.attach_type == BPF_SK_MSG_VERDICT);
    CHECK(msg.expected_attach_type == BPF_SK_MSG_VERDICT);
    const auto& evict = spec.programs.at(SOCKREDIR_PROG_EVICT);
    CHECK(evict.type == BPF_PROG_TYPE_TRACING);
    CHECK(evict.expected_attach_type == BPF_TRACE_ITER);
    CHECK(evict.attach_to == "sockmap");
    CHECK_FALSE(evict.core_relos.empty()); // the psock, read by CO-RE
    const auto& unmap = spec.programs.at(SOCKREDIR_PROG_UNMAP);
    CHECK(unmap.type == BPF_PROG_TYPE_SCHED_CLS);
    CHECK_FALSE(unmap.core_relos.empty());
    CHECK(spec.maps.at(SOCKREDIR_MAP_UNMAP_BATCH).value_size == sizeof(sockredir_unmap_batch));
}

TEST_CASE("the config map starts with draining off, the port selection and --no-adaptive, set on the spec before load")
{
    const auto spec = sockredir_spec(real_object(), {0, 0, {{6379, 6379}, {8000, 8002}}});
    const auto& config = spec.maps.at(SOCKREDIR_MAP_CONFIG);
    REQUIRE(config.contents.size() == 1);
    const auto& entry = config.contents[0];
    REQUIRE(entry.key.size() == sizeof(uint32_t));
    REQUIRE(entry.value.size() == sizeof(sockredir_config));
    uint32_t key = 1;
    std::memcpy(&key, entry.key.data(), sizeof key);
    CHECK(key == 0);
    sockredir_config value{};
    std::memcpy(&value, entry.value.data(), sizeof value);
    CHECK(value.flags == SOCKREDIR_F_PORTS);
    CHECK(format_ports(value) == "6379,8000-8002");
    // No selection: every port, and still an explicit zeroed value.
    const auto all = sockredir_spec(real_object(), {});
    std::memcpy(&value, all.maps.at(SOCKREDIR_MAP_CONFIG).contents.at(0).value.data(), sizeof value);
    CHECK(value.flags == 0);
    CHECK(format_ports(value) == "all");
    // --no-adaptive: its flag, the selection untouched.
    const auto fixed = sockredir_spec(real_object(), {0, 0, {}, true});
    std::memcpy(&value, fixed.maps.at(SOCKREDIR_MAP_CONFIG).contents.at(0).value.data(), sizeof value);
    CHECK(value.flags == SOCKREDIR_F_NO_ADAPTIVE);
    CHECK(format_ports(value) == "all");
    // The other maps start empty.
    CHECK(all.maps.at(SOCKREDIR_MAP_SOCKS).contents.empty());
    CHECK(all.maps.at(SOCKREDIR_MAP_COUNTERS).contents.empty());
}

TEST_CASE("--max-sockets changes the sockhash's max_entries and nothing else")
{
    const Bytes bytes = real_object();
    const auto base = spec_of(bytes);
    const auto spec = spec_of(bytes, 1234);
    CHECK(spec.maps.at(SOCKREDIR_MAP_SOCKS).max_entries == 1234);
    CHECK(base.maps.at(SOCKREDIR_MAP_SOCKS).max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);
    // And the flows map: one entry per socket in the sockhash.
    CHECK(spec.maps.at(SOCKREDIR_MAP_FLOWS).max_entries == 1234);
    for (const auto& m : spec.maps) {
        if (m.name == SOCKREDIR_MAP_SOCKS || m.name == SOCKREDIR_MAP_FLOWS)
            continue;
        CHECK(m.max_entries == base.maps.at(m.name).max_entries);
    }
    CHECK(spec_of(bytes, 1U << 24).maps.at(SOCKREDIR_MAP_SOCKS).max_entries == 1U << 24);
}

TEST_CASE("--max-sockets above the sockredir limit is refused")
{
    CHECK_THROWS_WITH_AS(spec_of(real_object(), (1U << 24) + 1),
                         doctest::Contains("--max-sockets 16777217 exceeds 16777216"), Error);
    CHECK_THROWS_WITH_AS(spec_of(real_object(), UINT32_MAX), doctest::Contains("--max-sockets 4294967295 exceeds"),
                         Error);
}

TEST_CASE("a built sockredir-shaped object opens like the real one")
{
    const auto spec = spec_of(ObjectRecipe{}.build());
    CHECK(spec.maps.size() == ObjectRecipe{}.maps.size());
    CHECK(spec.programs.size() == 2);
    CHECK(spec.programs.at(SOCKREDIR_PROG_SOCKOPS).type == BPF_PROG_TYPE_SOCK_OPS);
    CHECK(spec.programs.at(SOCKREDIR_PROG_MSG).type == BPF_PROG_TYPE_SK_MSG);
}

// --- what the contract refuses ---------------------------------------------------------------------------------

TEST_CASE("an object missing one of the required maps is refused by name")
{
    for (const char* name : {SOCKREDIR_MAP_SOCKS, SOCKREDIR_MAP_COUNTERS, SOCKREDIR_MAP_CONFIG, SOCKREDIR_MAP_SOCK_STATE,
                             SOCKREDIR_MAP_FLOWS, SOCKREDIR_MAP_LEARNED}) {
        CAPTURE(name);
        ObjectRecipe recipe;
        std::erase_if(recipe.maps, [&](const MapRecipe& m) { return m.name == name; });
        for (auto& p : recipe.programs)
            std::erase(p.map_refs, std::string(name));
        const std::string expected = std::string("map '") + name + "': missing (sockredir needs it)";
        CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains(expected.c_str()), Error);
    }
}

TEST_CASE("a map sockredir does not rely on is created as it is")
{
    // The next features add maps; the contract checks only what sockredir relies on.
    ObjectRecipe recipe;
    recipe.maps.push_back({"extra", {BPF_MAP_TYPE_HASH, 4, 4, 16, 0}});
    const auto spec = spec_of(recipe.build());
    CHECK(spec.maps.size() == recipe.maps.size());
    CHECK(spec.maps.at("extra").max_entries == 16);
}

TEST_CASE("a map defined twice under the same name is refused")
{
    // Two definitions would become two kernel maps, and the programs' references would be split between them.
    ObjectRecipe recipe;
    recipe.maps.push_back(recipe.maps[2]);
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'config': defined twice"), Error);
}

TEST_CASE("a required map of the wrong type is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.type = BPF_MAP_TYPE_SOCKMAP;
    CHECK_THROWS_WITH_AS(
        spec_of(recipe.build()),
        doctest::Contains("map 'sock_hash': type BPF_MAP_TYPE_SOCKMAP, sockredir needs BPF_MAP_TYPE_SOCKHASH"), Error);
}

TEST_CASE("a required map with the wrong key or value size is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.key_size = 44;
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'sock_hash': key size 44, expected 48"),
                         Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_COUNTERS).def.value_size = 4;
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'counters': value size 4, expected 8"), Error);
}

TEST_CASE("a required map with invalid max_entries is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_COUNTERS).def.max_entries = SOCKREDIR_COUNTER_MAX - 1;
    const std::string too_few =
        "map 'counters': max_entries " + std::to_string(SOCKREDIR_COUNTER_MAX - 1) + " is not valid for this map";
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains(too_few.c_str()), Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_SOCK_STATE).def.max_entries = 1;
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'sock_state': max_entries 1 is not valid"),
                         Error);
    recipe = ObjectRecipe{};
    map_named(recipe, SOCKREDIR_MAP_SOCKS).def.max_entries = (1U << 24) + 1;
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("map 'sock_hash': max_entries 16777217 exceeds 16777216"), Error);
}

TEST_CASE("a required map with the wrong flags is refused")
{
    ObjectRecipe recipe;
    map_named(recipe, SOCKREDIR_MAP_SOCK_STATE).def.map_flags = 0;
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'sock_state': flags 0, expected 1"), Error);
}

TEST_CASE("a program sockredir does not attach is refused by name")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"sockops", "second_sockops", {SOCKREDIR_MAP_COUNTERS}});
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'second_sockops' (section 'sockops'): not one sockredir attaches"),
                         Error);
}

TEST_CASE("a required program of the wrong type is refused")
{
    ObjectRecipe recipe;
    recipe.programs[0].section = "sk_msg"; // sockredir_sockops, now an sk_msg program
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'sockredir_sockops' (section 'sk_msg'): type BPF_PROG_TYPE_SK_MSG, "
                                           "sockredir needs BPF_PROG_TYPE_SOCK_OPS"),
                         Error);
}

TEST_CASE("an object without the sock_ops or without the sk_msg program is refused")
{
    ObjectRecipe recipe;
    recipe.programs.erase(recipe.programs.begin());
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'sockredir_sockops': missing (sockredir needs it)"), Error);
    recipe = ObjectRecipe{};
    recipe.programs.pop_back();
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'sockredir_msg': missing (sockredir needs it)"), Error);
}

TEST_CASE("an object without the eviction programs is sockredir's all the same: they are optional")
{
    // The recipe holds the two required programs and the four required maps only.
    const auto spec = spec_of(ObjectRecipe{}.build());
    CHECK_FALSE(spec.programs.contains(SOCKREDIR_PROG_EVICT));
    CHECK_FALSE(spec.programs.contains(SOCKREDIR_PROG_UNMAP));
    CHECK(std::string(without_program(SOCKREDIR_PROG_EVICT)).find(SOCKREDIR_PROG_UNMAP) != std::string::npos);
    CHECK(std::string(without_program(SOCKREDIR_PROG_UNMAP)).find("keep the sockmap path") != std::string::npos);
    CHECK(without_program(SOCKREDIR_PROG_MSG) == nullptr);
    CHECK(optional_programs() == std::vector<std::string>{SOCKREDIR_PROG_EVICT, SOCKREDIR_PROG_UNMAP});
}

TEST_CASE("the eviction iterator must iterate a sockmap, and the unmap program needs its batch map")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"iter/task", SOCKREDIR_PROG_EVICT, {SOCKREDIR_MAP_SOCKS}});
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'sockredir_evict' (section 'iter/task'): sockredir needs it on "
                                           "'sockmap' as an iterator"),
                         Error);
    recipe = ObjectRecipe{};
    recipe.programs.push_back({"sk_msg", SOCKREDIR_PROG_UNMAP, {SOCKREDIR_MAP_SOCKS}});
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("program 'sockredir_unmap' (section 'sk_msg'): type BPF_PROG_TYPE_SK_MSG, "
                                           "sockredir needs BPF_PROG_TYPE_SCHED_CLS"),
                         Error);
    recipe = ObjectRecipe{};
    recipe.programs.push_back({"tc", SOCKREDIR_PROG_UNMAP, {SOCKREDIR_MAP_SOCKS}});
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()),
                         doctest::Contains("map 'unmap_batch': missing (program 'sockredir_unmap' needs it)"), Error);
    recipe.maps.push_back({SOCKREDIR_MAP_UNMAP_BATCH, {BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), 8, 1, 0}});
    CHECK_THROWS_WITH_AS(spec_of(recipe.build()), doctest::Contains("map 'unmap_batch': value size 8, expected"),
                         Error);
}

TEST_CASE("attach loads the programs it attaches (the observers among them) and their six maps; the eviction "
          "programs are detach's")
{
    const auto attached = spec_of(real_object()).subset(attached_programs());
    CHECK(attached.programs.size() == 7);
    CHECK(attached.programs.contains(SOCKREDIR_PROG_OBSERVE_MAP));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_SETSOCKOPT));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_GETSOCKOPT));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_SOCKOPS));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_MSG));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_OBSERVE_TP));
    CHECK(attached.programs.contains(SOCKREDIR_PROG_OBSERVE_FEXIT));
    CHECK(attached.maps.size() == 6);
    CHECK_FALSE(attached.maps.contains(SOCKREDIR_MAP_UNMAP_BATCH));
    // The config map keeps the initial value sockredir_spec set.
    CHECK(attached.maps.at(SOCKREDIR_MAP_CONFIG).contents.size() == 1);

    const auto evict = spec_of(real_object()).subset(optional_programs());
    CHECK(evict.programs.size() == 2);
    CHECK(evict.maps.size() == 2); // the sockhash (the pinned one, at detach) and the batch
    CHECK(evict.maps.contains(SOCKREDIR_MAP_SOCKS));
    CHECK(evict.maps.contains(SOCKREDIR_MAP_UNMAP_BATCH));
}
