// Unit tests of loader/ebpf/btf load_btf, no root: against a fake kernel (tests/fake_kernel) that refuses the BTF
// kinds a test names, the object's BTF is loaded as it is, or probed and sanitized and loaded again, or refused.
#include <doctest/doctest.h>

#include <linux/btf.h>

#include <cerrno>
#include <string>

#include "elf/btf.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "tests/btf_builder.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using sockredir::test::BtfBuilder;
using sockredir::test::FakeKernel;

namespace {

// What clang emits for an object with a global, a function and a map key type: INT, VAR, DATASEC, FUNC_PROTO, FUNC.
elf::Btf object_btf()
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto v = b.add_var("counter", i);
    b.add_datasec(".data", 4, {{v, 0, 4}});
    b.add_func("handle", b.add_func_proto(i, {}));
    return elf::parse_btf(b.build());
}

bool has_kind(const std::vector<std::byte>& blob, uint32_t kind)
{
    const auto btf = elf::parse_btf(blob);
    for (const auto& t : btf.types())
        if (t.kind == kind)
            return true;
    return false;
}

} // namespace

TEST_CASE("an object's BTF the kernel accepts is loaded as it is, in one BPF_BTF_LOAD")
{
    FakeKernel kernel;
    const auto btf = object_btf();
    const auto fd = ebpf::load_btf(btf);
    CHECK(fd.get() >= 0);
    REQUIRE(kernel.btf_loads.size() == 1);
    CHECK(kernel.btf_loads[0].blob == elf::encode(btf));
    CHECK(kernel.btf_loads[0].fd == fd.get());
    CHECK(kernel.calls.size() == 1);
}

TEST_CASE("BTF refused with EINVAL is probed kind by kind, and a copy without what the kernel lacks is loaded")
{
    FakeKernel kernel;
    kernel.no_btf_kinds = {BTF_KIND_DATASEC}; // a kernel before 5.2
    const auto btf = object_btf();
    const auto fd = ebpf::load_btf(btf);
    REQUIRE(kernel.btf_loads.size() >= 3);
    // First the object's blob, refused; then the probes (FUNC, FUNC global, DATASEC); last the sanitized copy.
    CHECK(kernel.btf_loads.front().blob == elf::encode(btf));
    CHECK(kernel.btf_loads.front().fd == -1);
    const auto& last = kernel.btf_loads.back();
    CHECK(last.fd == fd.get());
    CHECK(last.with_log); // so that a refusal of the copy says why
    CHECK_FALSE(has_kind(last.blob, BTF_KIND_DATASEC));
    CHECK_FALSE(has_kind(last.blob, BTF_KIND_VAR));
    CHECK(has_kind(last.blob, BTF_KIND_FUNC)); // what the kernel has stays
    const auto sanitized = elf::parse_btf(last.blob);
    CHECK(sanitized.types().size() == btf.types().size()); // type ids hold for maps and programs
    CHECK(sanitized.type(3).kind == BTF_KIND_STRUCT);      // the DATASEC, as a struct of its vars
    size_t datasec_probes = 0;
    for (size_t i = 1; i + 1 < kernel.btf_loads.size(); ++i)
        datasec_probes += has_kind(kernel.btf_loads[i].blob, BTF_KIND_DATASEC) ? 1 : 0;
    CHECK(datasec_probes == 1);
    // The object's own BTF is not touched: CO-RE and map type ids read it as parsed.
    CHECK(btf == object_btf());
}

TEST_CASE("a sanitized copy the kernel refuses too is an error that carries the kernel's BTF log")
{
    FakeKernel kernel;
    kernel.no_btf_kinds = {BTF_KIND_DATASEC, BTF_KIND_STRUCT}; // the DATASEC's stand-in is refused as well
    try {
        (void)ebpf::load_btf(object_btf());
        FAIL("loaded");
    } catch (const base::Error& e) {
        CHECK(std::string(e.what()) == "loading the object's BTF (sanitized for this kernel): Invalid argument");
        CHECK(e.call() == "BPF_BTF_LOAD");
        CHECK(e.code() == EINVAL);
        CHECK(e.log() == "[3] Invalid kind\n");
    }
}

TEST_CASE("BTF refused for a reason no probe finds is refused once, in the loader's words")
{
    FakeKernel kernel;
    kernel.no_btf_kinds = {BTF_KIND_ENUM}; // never probed: every probe passes
    BtfBuilder b;
    b.add_enum("e", 4, {{"A", 1}});
    try {
        (void)ebpf::load_btf(elf::parse_btf(b.build()));
        FAIL("loaded");
    } catch (const base::Error& e) {
        CHECK(std::string(e.what()) == "loading the object's BTF: Invalid argument");
        CHECK(e.code() == EINVAL);
    }
    CHECK(kernel.btf_loads.size() == 1); // nothing to probe for an ENUM, nothing to sanitize
}

TEST_CASE("BTF refused with EPERM is not probed nor retried: the caller lacks the privilege")
{
    FakeKernel kernel;
    kernel.btf_err = EPERM;
    try {
        (void)ebpf::load_btf(object_btf());
        FAIL("loaded");
    } catch (const base::Error& e) {
        CHECK(e.code() == EPERM);
        CHECK(e.call() == "BPF_BTF_LOAD");
    }
    CHECK(kernel.btf_loads.size() == 1);
}
