// Unit tests of the loader's iterators and test runs, no root: the iter/<target> and tc sections, the kernel BTF
// target of an iterator, the BPF_LINK_CREATE, BPF_ITER_CREATE and BPF_PROG_TEST_RUN attributes on the fake kernel,
// an iterator's output read to its end, and optional programs that do not load.
#include <doctest/doctest.h>

#include <dirent.h>
#include <linux/bpf.h>
#include <linux/btf.h>

#include <array>
#include <cerrno>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/iter.hpp"
#include "loader/ebpf/spec.hpp"
#include "loader/ebpf/sys.hpp"
#include "tests/btf_builder.hpp"
#include "tests/elf_builder.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using sockredir::test::BtfBuilder;
using sockredir::test::FakeKernel;
using sockredir::test::ObjectRecipe;

namespace {

size_t open_fds()
{
    size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (::readdir(d) != nullptr)
        ++n;
    ::closedir(d);
    return n;
}

// A kernel BTF with the two functions a tracing program could name: [1] int, [2] int (void), [3] FUNC
// bpf_iter_sockmap, [4] FUNC sock_recvmsg.
elf::Btf kernel_btf()
{
    BtfBuilder b;
    const uint32_t i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const uint32_t proto = b.add_func_proto(i, {});
    b.add_func("bpf_iter_sockmap", proto);
    b.add_func("sock_recvmsg", proto);
    return elf::parse_btf(b.build());
}

ebpf::ProgramSpec trivial(const std::string& name, const std::string& section, uint32_t type)
{
    ebpf::ProgramSpec p;
    p.name = name;
    p.section = section;
    p.type = type;
    p.insns = {ebpf::insn::mov_imm(BPF_REG_0, 0), ebpf::insn::exit_insn()};
    return p;
}

} // namespace

TEST_CASE("an iter/<target> section is a tracing program of BPF_TRACE_ITER on that target; tc is a classifier")
{
    ObjectRecipe recipe;
    recipe.programs.push_back({"iter/sockmap", "walk", {}});
    recipe.programs.push_back({"tc", "classify", {}});
    const auto spec = ebpf::open_object(recipe.build());
    const auto& walk = spec.programs.at("walk");
    CHECK(walk.type == BPF_PROG_TYPE_TRACING);
    CHECK(walk.expected_attach_type == BPF_TRACE_ITER);
    CHECK(walk.attach_type == BPF_TRACE_ITER);
    CHECK(walk.attach_to == "sockmap");
    const auto& classify = spec.programs.at("classify");
    CHECK(classify.type == BPF_PROG_TYPE_SCHED_CLS);
    CHECK(classify.expected_attach_type == 0);
    CHECK(classify.attach_to.empty());
    // The target is not optional.
    ObjectRecipe bare;
    bare.programs.push_back({"iter", "walk", {}});
    CHECK_THROWS_WITH_AS(ebpf::open_object(bare.build()), doctest::Contains("section 'iter': program 'walk'"),
                         base::Error);
}

TEST_CASE("an iterator attaches to the kernel's FUNC bpf_iter_<target>, and a target the kernel lacks is named")
{
    const auto kernel = kernel_btf();
    CHECK(ebpf::attach_btf_id(kernel, BPF_TRACE_ITER, "sockmap") == 3);
    CHECK(ebpf::attach_btf_id(kernel, BPF_TRACE_FENTRY, "sock_recvmsg") == 4);
    CHECK_THROWS_WITH_AS(ebpf::attach_btf_id(kernel, BPF_TRACE_ITER, "task"),
                         "iterator 'task': not in this kernel's BTF (no function bpf_iter_task)", base::Error);
    // Not the bare name: "sock_recvmsg" is a function, not an iterator.
    CHECK_THROWS_AS(ebpf::attach_btf_id(kernel, BPF_TRACE_ITER, "sock_recvmsg"), base::Error);
}

TEST_CASE("a map iterator is linked with BPF_TRACE_ITER, no target fd, and the map in iter_info")
{
    FakeKernel kernel;
    kernel.link_err = 0;
    const auto link = ebpf::link_map_iterator(7, 9);
    REQUIRE(kernel.link_creates.size() == 1);
    const auto& l = kernel.link_creates[0];
    CHECK(l.prog_fd == 7);
    CHECK(l.target_fd == 0);
    CHECK(l.attach_type == BPF_TRACE_ITER);
    CHECK(l.iter_info_len == sizeof(bpf_iter_link_info));
    CHECK(l.iter_info.map.map_fd == 9);
    CHECK(link.get() == l.fd);
}

TEST_CASE("a link created without iter_info passes none")
{
    FakeKernel kernel;
    kernel.link_err = 0;
    const auto link = ebpf::sys::link_create(3, 4, BPF_CGROUP_SOCK_OPS);
    REQUIRE(kernel.link_creates.size() == 1);
    CHECK(kernel.link_creates[0].iter_info_len == 0);
    CHECK(kernel.link_creates[0].target_fd == 4);
}

TEST_CASE("a run of an iterator creates it from the link and reads its output to the end, over several reads")
{
    FakeKernel kernel;
    // More than one read() takes.
    for (size_t i = 0; i < 200000; ++i)
        kernel.iter_output.push_back(static_cast<std::byte>(i * 7));
    const size_t fds = open_fds();
    const auto out = ebpf::run_iterator(11);
    CHECK(out == kernel.iter_output);
    REQUIRE(kernel.iter_creates.size() == 1);
    CHECK(kernel.iter_creates[0].link_fd == 11);
    CHECK(kernel.iter_creates[0].flags == 0);
    CHECK(open_fds() == fds); // the iterator's file is closed again

    kernel.iter_output.clear();
    CHECK(ebpf::run_iterator(11).empty());
}

TEST_CASE("a refused BPF_ITER_CREATE is an error naming the command")
{
    FakeKernel kernel;
    kernel.all = EPERM;
    try {
        (void)ebpf::run_iterator(11);
        FAIL("ran");
    } catch (const base::Error& e) {
        CHECK(e.call() == "BPF_ITER_CREATE");
        CHECK(e.code() == EPERM);
    }
}

TEST_CASE("a test run passes the program, the data and one repeat, and returns the program's return value")
{
    FakeKernel kernel;
    kernel.test_run_retval = 42;
    const std::array<std::byte, 14> packet{std::byte{1}};
    const auto r = ebpf::sys::prog_test_run(5, packet);
    CHECK(r.retval == 42);
    REQUIRE(kernel.test_runs.size() == 1);
    CHECK(kernel.test_runs[0].prog_fd == 5);
    CHECK(kernel.test_runs[0].data.size() == 14);
    CHECK(kernel.test_runs[0].data[0] == std::byte{1});
    CHECK(kernel.test_runs[0].repeat == 1);
}

TEST_CASE("an optional program that does not load is left out with its error; the others load as without it")
{
    FakeKernel kernel;
    kernel.no_prog_types = {BPF_PROG_TYPE_SCHED_CLS};
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    spec.programs.add(trivial("needed", "sockops", BPF_PROG_TYPE_SOCK_OPS));
    spec.programs.add(trivial("nice", "tc", BPF_PROG_TYPE_SCHED_CLS));
    ebpf::LoadOptions options;
    options.optional = {"nice"};
    auto c = ebpf::load_collection(spec, options);
    CHECK(c.programs.contains("needed"));
    CHECK_FALSE(c.programs.contains("nice"));
    REQUIRE(c.not_loaded.size() == 1);
    CHECK(c.not_loaded[0].name == "nice");
    CHECK(c.not_loaded[0].error.call() == "BPF_PROG_LOAD");
    CHECK(c.not_loaded[0].error.code() == EINVAL);

    // The same program, needed: the load fails.
    CHECK_THROWS_AS(ebpf::load_collection(spec), base::Error);
}

TEST_CASE("an optional tracing program on a kernel without BTF is left out, saying why")
{
    FakeKernel kernel;
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    spec.programs.add(trivial("needed", "sockops", BPF_PROG_TYPE_SOCK_OPS));
    auto walk = trivial("walk", "iter/sockmap", BPF_PROG_TYPE_TRACING);
    walk.expected_attach_type = BPF_TRACE_ITER;
    walk.attach_to = "sockmap";
    spec.programs.add(walk);
    ebpf::LoadOptions options;
    options.kernel_btf = "/nonexistent/vmlinux";
    options.optional = {"walk"};
    const auto c = ebpf::load_collection(spec, options);
    CHECK(c.programs.size() == 1);
    REQUIRE(c.not_loaded.size() == 1);
    CHECK(std::string(c.not_loaded[0].error.what()).find("this kernel has no BTF") != std::string::npos);
    // Nothing was asked of the kernel for it.
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_TRACING) == 0);
}

TEST_CASE("a subset of the spec keeps the programs named, in the object's order, and only the maps they use")
{
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    for (const char* name : {"a", "b", "c"}) {
        ebpf::MapSpec m;
        m.name = std::string("map_") + name;
        m.type = BPF_MAP_TYPE_ARRAY;
        spec.maps.add(m);
    }
    auto one = trivial("one", "sockops", BPF_PROG_TYPE_SOCK_OPS);
    one.maps = {{0, "map_a"}};
    auto two = trivial("two", "tc", BPF_PROG_TYPE_SCHED_CLS);
    two.maps = {{0, "map_b"}, {2, "map_a"}};
    auto three = trivial("three", "tc", BPF_PROG_TYPE_SCHED_CLS);
    three.maps = {{0, "map_c"}};
    spec.programs.add(one);
    spec.programs.add(two);
    spec.programs.add(three);
    const std::vector<std::string> names{"two", "one", "absent"};
    const auto sub = spec.subset(names);
    CHECK(sub.license == "GPL");
    REQUIRE(sub.programs.size() == 2);
    CHECK(sub.programs.begin()->name == "one");
    CHECK(sub.programs.contains("two"));
    CHECK_FALSE(sub.programs.contains("three"));
    CHECK(sub.maps.size() == 2);
    CHECK(sub.maps.contains("map_a"));
    CHECK(sub.maps.contains("map_b"));
    CHECK_FALSE(sub.maps.contains("map_c"));
    CHECK(spec.subset({}).maps.empty());
}

TEST_CASE("an existing map stands for the map of its name: not created, not written, and checked for its shape")
{
    FakeKernel kernel;
    ebpf::CollectionSpec spec;
    spec.license = "GPL";
    ebpf::MapSpec hash;
    hash.name = "socks";
    hash.type = BPF_MAP_TYPE_SOCKHASH;
    hash.key_size = 48;
    hash.value_size = 8;
    hash.max_entries = 65536;
    hash.contents.push_back({std::vector<std::byte>(48), std::vector<std::byte>(8)});
    spec.maps.add(hash);
    ebpf::MapSpec other = hash;
    other.name = "batch";
    other.type = BPF_MAP_TYPE_ARRAY;
    other.key_size = 4;
    other.contents.clear();
    spec.maps.add(other);

    // The pinned map of an earlier attach, of another capacity (--max-sockets).
    ebpf::sys::MapCreateArgs args;
    args.type = BPF_MAP_TYPE_SOCKHASH;
    args.key_size = 48;
    args.value_size = 8;
    args.max_entries = 100;
    auto pinned = ebpf::sys::map_create(args);
    const int pinned_fd = pinned.get();
    kernel.map_creates.clear();
    kernel.calls.clear();
    std::vector<ebpf::Map> existing;
    existing.push_back({"socks", BPF_MAP_TYPE_SOCKHASH, std::move(pinned)});
    const auto c = ebpf::create_maps(spec, std::move(existing));
    CHECK(c.maps.at("socks").fd.get() == pinned_fd);
    REQUIRE(kernel.map_creates.size() == 1); // the batch map only
    CHECK(kernel.map_creates[0].name == "batch");
    CHECK(kernel.map_updates.empty()); // the existing map's contents are its own

    // Another key size: the programs would read keys of the wrong size.
    args.key_size = 16;
    std::vector<ebpf::Map> wrong;
    wrong.push_back({"socks", BPF_MAP_TYPE_SOCKHASH, ebpf::sys::map_create(args)});
    CHECK_THROWS_WITH_AS(ebpf::create_maps(spec, std::move(wrong)),
                         doctest::Contains("map 'socks': the existing map is a BPF_MAP_TYPE_SOCKHASH of 16+8 bytes, "
                                           "the object declares a BPF_MAP_TYPE_SOCKHASH of 48+8"),
                         base::Error);
}
