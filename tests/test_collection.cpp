// Unit tests of loader/ebpf/collection create_maps and load_programs, no root: against a fake kernel
// (tests/fake_kernel), maps are created with their BTF types or without them where the kernel refuses, filled right
// after, and programs loaded with their BTF, function and line records, a rejection bringing the verifier's log.
#include <doctest/doctest.h>

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/insn.hpp"
#include "tests/btf_builder.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using sockredir::test::BtfBuilder;
using sockredir::test::FakeKernel;

namespace {

// [1] int, [2] struct value { int n; }, [3] int (void), [4] FUNC 'prog'.
constexpr uint32_t kInt = 1, kValue = 2, kFunc = 4;

ebpf::CollectionSpec spec_with_btf()
{
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    BtfBuilder b;
    b.add_int("int", 4, BTF_INT_SIGNED, 32);
    b.add_struct("value", 4, {{"n", kInt, 0}});
    b.add_func("prog", b.add_func_proto(kInt, {}));
    b.add_string("prog.bpf.c");
    b.add_string("return 0;");
    spec.btf = elf::parse_btf(b.build());
    return spec;
}

ebpf::MapSpec map(const std::string& name, uint32_t type, uint32_t key_id, uint32_t value_id)
{
    ebpf::MapSpec m;
    m.name = name;
    m.type = type;
    m.key_size = 4;
    m.value_size = 4;
    m.max_entries = 4;
    m.btf_key_type_id = key_id;
    m.btf_value_type_id = value_id;
    return m;
}

std::vector<std::byte> bytes_of(uint32_t v)
{
    std::vector<std::byte> out(sizeof v);
    std::memcpy(out.data(), &v, sizeof v);
    return out;
}

ebpf::ProgramSpec program(const elf::Btf& btf)
{
    ebpf::ProgramSpec p;
    p.name = "prog";
    p.section = "sockops";
    p.type = BPF_PROG_TYPE_SOCK_OPS;
    p.insns = {ebpf::insn::mov_imm(BPF_REG_0, 0), ebpf::insn::exit_insn()};
    p.func_info = {{0, kFunc}};
    const auto file = static_cast<uint32_t>(btf.strings().find("prog.bpf.c"));
    const auto line = static_cast<uint32_t>(btf.strings().find("return 0;"));
    p.line_info = {{0, file, line, 12 << 10 | 2}, {1, file, line, 12 << 10 | 9}};
    return p;
}

} // namespace

TEST_CASE("a map with BTF key and value types is created with the object's BTF and them, and filled right after")
{
    FakeKernel kernel;
    auto spec = spec_with_btf();
    auto& counts = spec.maps.add(map("counts", BPF_MAP_TYPE_ARRAY, kInt, kValue));
    counts.set(uint32_t{1}, uint32_t{7});
    counts.set(uint32_t{2}, uint32_t{9});
    auto& plain = spec.maps.add(map("plain", BPF_MAP_TYPE_HASH, 0, 0));
    plain.set(uint32_t{3}, uint32_t{5});

    const auto c = ebpf::create_maps(spec);
    REQUIRE(kernel.btf_loads.size() == 1);
    CHECK(c.btf.get() == kernel.btf_loads[0].fd);
    REQUIRE(kernel.map_creates.size() == 2);
    const auto& typed = kernel.map_creates[0];
    CHECK(typed.name == "counts");
    CHECK(typed.btf_fd == c.btf.get());
    CHECK(typed.btf_key_type_id == kInt);
    CHECK(typed.btf_value_type_id == kValue);
    CHECK(typed.fd == c.maps.at("counts").fd.get());
    CHECK(kernel.map_creates[1].btf_fd == -1);
    CHECK(kernel.map_creates[1].btf_key_type_id == 0);

    // Each map's contents right after its creation, before the next map (and any program) exists.
    std::vector<int> order;
    for (const auto& call : kernel.calls)
        order.push_back(call.cmd);
    CHECK(order == std::vector<int>{BPF_BTF_LOAD, BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_UPDATE_ELEM,
                                    BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM});
    REQUIRE(kernel.map_updates.size() == 3);
    CHECK(kernel.map_updates[0].map_fd == typed.fd);
    CHECK(kernel.map_updates[0].key == bytes_of(1));
    CHECK(kernel.map_updates[0].value == bytes_of(7));
    CHECK(kernel.map_updates[0].flags == BPF_ANY);
    CHECK(kernel.map_updates[1].value == bytes_of(9));
    CHECK(kernel.map_updates[2].map_fd == kernel.map_creates[1].fd);
    CHECK(kernel.map_updates[2].key == bytes_of(3));
}

TEST_CASE("a map the kernel refuses to create with BTF types (EINVAL) is created again without them")
{
    FakeKernel kernel;
    kernel.no_btf_map_types = {BPF_MAP_TYPE_SOCKHASH}; // a sockhash takes no BTF value type before 5.x
    auto spec = spec_with_btf();
    spec.maps.add(map("sock_hash", BPF_MAP_TYPE_SOCKHASH, kInt, kInt));
    const auto c = ebpf::create_maps(spec);
    REQUIRE(kernel.map_creates.size() == 2);
    CHECK(kernel.map_creates[0].btf_key_type_id == kInt);
    CHECK(kernel.map_creates[0].fd == -1);
    CHECK(kernel.map_creates[1].btf_fd == -1);
    CHECK(kernel.map_creates[1].btf_key_type_id == 0);
    CHECK(kernel.map_creates[1].btf_value_type_id == 0);
    CHECK(c.maps.at("sock_hash").fd.get() == kernel.map_creates[1].fd);
}

TEST_CASE("a map type that needs BTF is not created without it: the kernel's refusal stands")
{
    FakeKernel kernel;
    kernel.no_btf_map_types = {BPF_MAP_TYPE_SK_STORAGE};
    auto spec = spec_with_btf();
    auto m = map("storage", BPF_MAP_TYPE_SK_STORAGE, kInt, kValue);
    m.needs_btf = true;
    m.flags = BPF_F_NO_PREALLOC;
    spec.maps.add(m);
    try {
        (void)ebpf::create_maps(spec);
        FAIL("created");
    } catch (const base::Error& e) {
        CHECK(e.call() == "BPF_MAP_CREATE");
        CHECK(e.code() == EINVAL);
    }
    CHECK(kernel.map_creates.size() == 1);
}

TEST_CASE("a program is loaded with the object's BTF, its function records and its line records")
{
    FakeKernel kernel;
    auto spec = spec_with_btf();
    spec.programs.add(program(*spec.btf));
    auto c = ebpf::create_maps(spec);
    REQUIRE(c.btf);
    ebpf::load_programs(spec, c);
    REQUIRE(kernel.prog_loads.size() == 1);
    const auto& p = kernel.prog_loads[0];
    CHECK(p.name == "prog");
    CHECK(p.type == BPF_PROG_TYPE_SOCK_OPS);
    CHECK(p.prog_btf_fd == c.btf.get());
    REQUIRE(p.func_info.size() == 1);
    CHECK(p.func_info[0].insn_off == 0);
    CHECK(p.func_info[0].type_id == kFunc);
    REQUIRE(p.line_info.size() == 2);
    CHECK(p.line_info[1].insn_off == 1);
    CHECK(p.line_info[1].line_col == (12U << 10 | 9));
    CHECK(p.line_info[0].file_name_off == spec.btf->strings().find("prog.bpf.c"));
    CHECK(p.log_level == 0); // no log unless the first load fails
    CHECK(c.programs.at("prog").fd.get() == p.fd);
}

TEST_CASE("a program the verifier rejects is loaded again with the log on, and the error carries the log")
{
    FakeKernel kernel;
    const std::string log = "0: (b7) r0 = 0\n1: (95) exit\nAt program exit the register R0 has value (0x0; 0x0)\n";
    kernel.prog_answers[BPF_PROG_TYPE_SOCK_OPS] = {EACCES, log};
    auto spec = spec_with_btf();
    spec.programs.add(program(*spec.btf));
    auto c = ebpf::create_maps(spec);
    try {
        ebpf::load_programs(spec, c);
        FAIL("loaded");
    } catch (const base::Error& e) {
        CHECK(std::string(e.what()) == "the verifier rejected program 'prog' (section 'sockops'): Permission denied");
        CHECK(e.call() == "BPF_PROG_LOAD");
        CHECK(e.code() == EACCES);
        CHECK(e.log() == log);
    }
    REQUIRE(kernel.prog_loads.size() == 2);
    CHECK(kernel.prog_loads[0].log_level == 0);
    CHECK(kernel.prog_loads[1].log_level == 1);
    CHECK(kernel.prog_loads[1].prog_btf_fd == c.btf.get()); // the retry is the same load, with a log
    CHECK(kernel.prog_loads[1].line_info.size() == 2);
    CHECK(c.programs.empty());
}

TEST_CASE("a program refused before the verifier ran is an error without a log")
{
    FakeKernel kernel;
    kernel.no_prog_types = {BPF_PROG_TYPE_SOCK_OPS};
    auto spec = spec_with_btf();
    spec.programs.add(program(*spec.btf));
    auto c = ebpf::create_maps(spec);
    try {
        ebpf::load_programs(spec, c);
        FAIL("loaded");
    } catch (const base::Error& e) {
        CHECK(std::string(e.what()) == "loading program 'prog' (section 'sockops'): Invalid argument");
        CHECK(e.code() == EINVAL);
        CHECK(e.log().empty());
    }
}

TEST_CASE("a spec without BTF loads no BTF and passes none to its maps and programs")
{
    FakeKernel kernel;
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    spec.maps.add(map("plain", BPF_MAP_TYPE_ARRAY, 0, 0));
    auto p = program(elf::Btf{});
    p.func_info.clear();
    p.line_info.clear();
    spec.programs.add(p);
    auto c = ebpf::load_collection(spec);
    CHECK(kernel.btf_loads.empty());
    CHECK_FALSE(c.btf);
    REQUIRE(kernel.prog_loads.size() == 1);
    CHECK(kernel.prog_loads[0].prog_btf_fd == -1);
    CHECK(kernel.prog_loads[0].func_info.empty());
}
