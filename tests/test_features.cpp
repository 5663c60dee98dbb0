// Unit tests of loader/ebpf/features, no root: each probe against a fake kernel (tests/fake_kernel) that answers as
// a kernel with or without the feature would, and the reading of the verifier's log.
#include <doctest/doctest.h>

#include <linux/bpf.h>

#include <cerrno>
#include <string>

#include "loader/ebpf/features.hpp"
#include "tests/fake_kernel.hpp"

using namespace sockredir;
using sockredir::test::FakeKernel;

TEST_CASE("the verifier's reason is its last line that is not a statistic")
{
    CHECK(ebpf::verifier_reason(
              "0: (85) call bpf_msg_redirect_hash#71\n"
              "program of this type cannot use helper bpf_msg_redirect_hash#71\n"
              "processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0\n") ==
          "program of this type cannot use helper bpf_msg_redirect_hash#71");
    CHECK(ebpf::verifier_reason("0: (85) call unknown#9999\nunknown func unknown#9999\n") ==
          "unknown func unknown#9999");
    CHECK(ebpf::verifier_reason("invalid argument\nverification time 5 usec\nstack depth 0\n\n") == "invalid argument");
    CHECK(ebpf::verifier_reason("no newline at the end") == "no newline at the end");
    CHECK(ebpf::verifier_reason("").empty());
    CHECK(ebpf::verifier_reason("processed 1 insns\n").empty());
}

TEST_CASE("each of the verifier's three ways of refusing a helper means missing")
{
    for (const char* words : {"invalid func unknown#250", "unknown func bpf_sk_storage_get#107",
                              "program of this type cannot use helper bpf_sk_storage_get#107"}) {
        CAPTURE(words);
        FakeKernel kernel;
        kernel.helper_answers[{BPF_PROG_TYPE_SK_MSG, BPF_FUNC_sk_storage_get}] = {EINVAL,
                                                                                  std::string("0: (85)\n") + words};
        const auto r = ebpf::have_helper(BPF_PROG_TYPE_SK_MSG, BPF_FUNC_sk_storage_get);
        CHECK_FALSE(r.ok());
        CHECK(r.call == "BPF_PROG_LOAD");
        CHECK(r.err == EINVAL);
        CHECK(r.reason == words);
    }
}

TEST_CASE("a helper whose arguments the verifier refuses is there; a refusal before the verifier says nothing of it")
{
    {
        FakeKernel kernel;
        kernel.helper_answers[{BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_hash_update}] = {
            EACCES, "0: (85) call bpf_sock_hash_update#70\nR2 type=scalar expected=map_ptr\n"};
        const auto r = ebpf::have_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_hash_update);
        CHECK(r.ok());
        CHECK(r.reason == "R2 type=scalar expected=map_ptr");
        CHECK(std::string(r.since) == "4.18");
    }
    {
        FakeKernel kernel;
        kernel.helper_answers[{BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_hash_update}] = {EPERM, ""};
        const auto r = ebpf::have_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_hash_update);
        CHECK_FALSE(r.ok());
        CHECK(r.err == EPERM);
    }
}

TEST_CASE("a transient failure of a probe's load is retried and counts as there")
{
    FakeKernel kernel;
    kernel.transient_failures = 1;
    CHECK(ebpf::have_prog_type(BPF_PROG_TYPE_SOCK_OPS).ok());
    CHECK(kernel.count(BPF_PROG_LOAD, BPF_PROG_TYPE_SOCK_OPS) == 2);
}

TEST_CASE("a program type the kernel does not know is missing, with the release that brought it")
{
    FakeKernel kernel;
    kernel.no_prog_types = {BPF_PROG_TYPE_SK_MSG};
    const auto r = ebpf::have_prog_type(BPF_PROG_TYPE_SK_MSG);
    CHECK_FALSE(r.ok());
    CHECK(r.call == "BPF_PROG_LOAD");
    CHECK(r.err == EINVAL);
    CHECK(r.reason.empty()); // refused before the verifier ran
    CHECK(std::string(r.since) == "4.17");
    CHECK(ebpf::have_prog_type(BPF_PROG_TYPE_SOCK_OPS).ok());
}

TEST_CASE("socket storage is created with BTF for its key and value, as the kernel demands")
{
    FakeKernel kernel; // refuses BPF_MAP_TYPE_SK_STORAGE without BTF
    CHECK(ebpf::have_map_type(BPF_MAP_TYPE_SK_STORAGE).ok());
    CHECK(kernel.count(BPF_BTF_LOAD, 0) == 1);
    kernel.btf_err = EINVAL;
    const auto r = ebpf::have_map_type(BPF_MAP_TYPE_SK_STORAGE);
    CHECK_FALSE(r.ok());
    CHECK(r.call == "BPF_BTF_LOAD");
    CHECK_FALSE(ebpf::have_btf_load().ok());
}

TEST_CASE("a map or program type that takes more than a definition is not guessed at")
{
    FakeKernel kernel;
    for (const auto& r : {ebpf::have_map_type(BPF_MAP_TYPE_ARRAY_OF_MAPS), ebpf::have_map_type(BPF_MAP_TYPE_STRUCT_OPS),
                          ebpf::have_prog_type(BPF_PROG_TYPE_TRACING), ebpf::have_helper(BPF_PROG_TYPE_LSM, 1)}) {
        CHECK_FALSE(r.ok());
        CHECK(r.err == EOPNOTSUPP);
        CHECK(r.call.empty());
    }
    CHECK(kernel.calls.empty());
}

TEST_CASE("cgroup links are there when BPF_LINK_CREATE gets as far as the target descriptor")
{
    FakeKernel kernel;
    CHECK(ebpf::have_cgroup_link().ok()); // EBADF for the target -1
    kernel.link_err = EINVAL;
    const auto r = ebpf::have_cgroup_link(BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS);
    CHECK_FALSE(r.ok());
    CHECK(r.call == "BPF_LINK_CREATE");
    CHECK(std::string(r.since) == "5.7");
    kernel.no_prog_types = {BPF_PROG_TYPE_SOCK_OPS};
    CHECK(ebpf::have_cgroup_link(BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS).call == "BPF_PROG_LOAD");
}
