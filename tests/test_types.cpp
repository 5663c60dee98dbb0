// Unit tests of loader/ebpf/types: the names and releases of the kernel's program types, map types and helpers.
#include <doctest/doctest.h>

#include <linux/bpf.h>

#include <string>

#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/spec.hpp"
#include "loader/ebpf/types.hpp"
#include "tests/elf_builder.hpp"

using namespace sockredir::ebpf;

TEST_CASE("map_type_name and prog_type_name name the kernel's types and number the rest")
{
    CHECK(map_type_name(BPF_MAP_TYPE_SOCKHASH) == "BPF_MAP_TYPE_SOCKHASH");
    CHECK(map_type_name(BPF_MAP_TYPE_SK_STORAGE) == "BPF_MAP_TYPE_SK_STORAGE");
    CHECK(map_type_name(BPF_MAP_TYPE_PERCPU_ARRAY) == "BPF_MAP_TYPE_PERCPU_ARRAY");
    CHECK(map_type_name(BPF_MAP_TYPE_RINGBUF) == "BPF_MAP_TYPE_RINGBUF");
    CHECK(map_type_name(9999) == "9999");
    CHECK(prog_type_name(BPF_PROG_TYPE_SK_MSG) == "BPF_PROG_TYPE_SK_MSG");
    CHECK(prog_type_name(BPF_PROG_TYPE_TRACING) == "BPF_PROG_TYPE_TRACING");
    CHECK(prog_type_name(9999) == "9999");
}

TEST_CASE("the short labels are the lower-case UAPI names, as bpftool prints them")
{
    CHECK(map_type_label(BPF_MAP_TYPE_SOCKHASH) == "sockhash");
    CHECK(map_type_label(BPF_MAP_TYPE_SK_STORAGE) == "sk_storage");
    CHECK(map_type_label(BPF_MAP_TYPE_PERCPU_ARRAY) == "percpu_array");
    CHECK(map_type_label(9999) == "9999");
    CHECK(prog_type_label(BPF_PROG_TYPE_SOCK_OPS) == "sock_ops");
    CHECK(prog_type_label(BPF_PROG_TYPE_SK_MSG) == "sk_msg");
    CHECK(prog_type_label(9999) == "9999");
}

TEST_CASE("every program type and map type of the kernel headers has a row with a release")
{
    // The headers have no count of their types; these are the last ones of Linux 6.1's.
    for (uint32_t t = BPF_PROG_TYPE_UNSPEC + 1; t <= BPF_PROG_TYPE_SYSCALL; ++t) {
        CAPTURE(t);
        const auto* row = find_prog_type(t);
        REQUIRE(row != nullptr);
        CHECK(row->since != nullptr);
    }
    for (uint32_t t = BPF_MAP_TYPE_UNSPEC + 1; t <= BPF_MAP_TYPE_USER_RINGBUF; ++t) {
        CAPTURE(t);
        const auto* row = find_map_type(t);
        REQUIRE(row != nullptr);
        CHECK(row->since != nullptr);
    }
    CHECK(find_prog_type(BPF_PROG_TYPE_UNSPEC) == nullptr);
    CHECK(find_map_type(BPF_MAP_TYPE_UNSPEC) == nullptr);
}

TEST_CASE("helper names come from the kernel's list, with a number for what it does not know")
{
    CHECK(helper_name(BPF_FUNC_map_lookup_elem) == "bpf_map_lookup_elem");
    CHECK(helper_name(BPF_FUNC_sk_storage_get) == "bpf_sk_storage_get");
    CHECK(helper_name(BPF_FUNC_get_netns_cookie) == "bpf_get_netns_cookie");
    CHECK(helper_name(__BPF_FUNC_MAX_ID - 1) != "helper #" + std::to_string(__BPF_FUNC_MAX_ID - 1));
    CHECK(helper_name(__BPF_FUNC_MAX_ID) == "helper #" + std::to_string(__BPF_FUNC_MAX_ID));
    CHECK(helper_name(0) == "helper #0"); // BPF_FUNC_unspec is no helper
}

TEST_CASE("a helper's release is the one that allowed it in the program type where that came later")
{
    CHECK(std::string(helper_since(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie)) == "5.7");
    CHECK(std::string(helper_since(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_netns_cookie)) == "5.15");
    CHECK(std::string(helper_since(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_get_netns_cookie)) == "5.15");
    CHECK(std::string(helper_since(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_msg_redirect_hash)) == "4.18");
    CHECK(helper_since(BPF_PROG_TYPE_SK_MSG, __BPF_FUNC_MAX_ID) == nullptr);
}

TEST_CASE("every program type, map type and helper the real object uses has its release in the tables")
{
    const auto spec = open_object(sockredir::test::real_object());
    for (const auto& m : spec.maps) {
        CAPTURE(m.name);
        REQUIRE(find_map_type(m.type) != nullptr);
    }
    for (const auto& p : spec.programs) {
        CAPTURE(p.name);
        REQUIRE(find_prog_type(p.type) != nullptr);
        const auto helpers = insn::helper_calls(p.insns);
        CHECK_FALSE(helpers.empty());
        for (auto id : helpers) {
            CAPTURE(helper_name(id));
            CHECK(helper_since(p.type, id) != nullptr);
        }
    }
}
