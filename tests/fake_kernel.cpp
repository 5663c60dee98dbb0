// The fake bpf(2): descriptors are real (of /dev/null), so that the code under test closes what it is given.
#include "tests/fake_kernel.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <stdexcept>

#include "loader/ebpf/insn.hpp"

namespace sockredir::test {

namespace {

FakeKernel* current = nullptr;

long fail(int err)
{
    errno = err;
    return -1;
}

long new_fd()
{
    return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

} // namespace

FakeKernel::FakeKernel()
{
    if (current != nullptr)
        throw std::logic_error("test: a FakeKernel is already installed");
    current = this;
    previous_ = ebpf::sys::override_bpf(&FakeKernel::call);
}

FakeKernel::~FakeKernel()
{
    ebpf::sys::override_bpf(previous_);
    current = nullptr;
}

size_t FakeKernel::count(int cmd, uint32_t type) const
{
    return static_cast<size_t>(
        std::count_if(calls.begin(), calls.end(), [&](const Call& c) { return c.cmd == cmd && c.type == type; }));
}

long FakeKernel::call(int cmd, bpf_attr& attr)
{
    return current->answer(cmd, attr);
}

long FakeKernel::answer(int cmd, bpf_attr& attr)
{
    calls.push_back({cmd, cmd == BPF_PROG_LOAD ? attr.prog_type : cmd == BPF_MAP_CREATE ? attr.map_type : 0});
    if (all != 0)
        return fail(all);
    switch (cmd) {
    case BPF_MAP_CREATE:
        if (no_map_types.count(attr.map_type) != 0)
            return fail(EINVAL);
        // As the kernel: socket storage only with BTF for its key and value.
        if (attr.map_type == BPF_MAP_TYPE_SK_STORAGE && attr.btf_key_type_id == 0)
            return fail(EINVAL);
        return new_fd();
    case BPF_PROG_LOAD: {
        if (transient_failures > 0) {
            --transient_failures;
            return fail(EAGAIN);
        }
        if (no_prog_types.count(attr.prog_type) != 0)
            return fail(EINVAL);
        const std::span<const bpf_insn> insns(reinterpret_cast<const bpf_insn*>(static_cast<uintptr_t>(attr.insns)),
                                              attr.insn_cnt);
        for (auto id : ebpf::insn::helper_calls(insns)) {
            const auto a = helper_answers.find({attr.prog_type, id});
            if (a == helper_answers.end())
                continue;
            if (attr.log_size > 0 && attr.log_buf != 0) {
                char* buf = reinterpret_cast<char*>(static_cast<uintptr_t>(attr.log_buf));
                const size_t n = std::min<size_t>(a->second.log.size(), attr.log_size - 1);
                std::memcpy(buf, a->second.log.data(), n);
                buf[n] = '\0';
            }
            return fail(a->second.err);
        }
        return new_fd();
    }
    case BPF_BTF_LOAD:
        return btf_err != 0 ? fail(btf_err) : new_fd();
    case BPF_LINK_CREATE:
        return link_err != 0 ? fail(link_err) : new_fd();
    default:
        return fail(EINVAL);
    }
}

} // namespace sockredir::test
