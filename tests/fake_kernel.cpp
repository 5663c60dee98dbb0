// The fake bpf(2): descriptors are real (of /dev/null), so that the code under test closes what it is given.
#include "tests/fake_kernel.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <stdexcept>

#include "elf/btf.hpp"
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
        return map_create(attr);
    case BPF_MAP_UPDATE_ELEM:
        return map_update(attr);
    case BPF_PROG_LOAD:
        return prog_load(attr);
    case BPF_BTF_LOAD:
        return btf_load(attr);
    case BPF_LINK_CREATE:
        return link_create(attr);
    case BPF_ITER_CREATE:
        return iter_create(attr);
    case BPF_PROG_TEST_RUN:
        return test_run(attr);
    case BPF_OBJ_GET_INFO_BY_FD:
        return info(attr);
    default:
        return fail(EINVAL);
    }
}

long FakeKernel::map_create(const bpf_attr& attr)
{
    const bool typed = attr.btf_key_type_id != 0 || attr.btf_value_type_id != 0;
    MapCreate& m = map_creates.emplace_back();
    m.type = attr.map_type;
    m.name = std::string(attr.map_name, ::strnlen(attr.map_name, sizeof attr.map_name));
    m.btf_fd = typed ? static_cast<int>(attr.btf_fd) : -1;
    m.btf_key_type_id = attr.btf_key_type_id;
    m.btf_value_type_id = attr.btf_value_type_id;
    if (no_map_types.count(attr.map_type) != 0)
        return fail(EINVAL);
    if (typed && no_btf_map_types.count(attr.map_type) != 0)
        return fail(EINVAL);
    // As the kernel: socket storage only with BTF for its key and value.
    if (attr.map_type == BPF_MAP_TYPE_SK_STORAGE && attr.btf_key_type_id == 0)
        return fail(EINVAL);
    m.fd = static_cast<int>(new_fd());
    map_sizes_[m.fd] = {attr.key_size, attr.value_size};
    map_types_[m.fd] = attr.map_type;
    return m.fd;
}

long FakeKernel::map_update(const bpf_attr& attr)
{
    const auto sizes = map_sizes_.find(static_cast<int>(attr.map_fd));
    if (sizes == map_sizes_.end())
        return fail(EBADF);
    const auto* key = reinterpret_cast<const std::byte*>(static_cast<uintptr_t>(attr.key));
    const auto* value = reinterpret_cast<const std::byte*>(static_cast<uintptr_t>(attr.value));
    map_updates.push_back({sizes->first, std::vector<std::byte>(key, key + sizes->second.first),
                           std::vector<std::byte>(value, value + sizes->second.second), attr.flags});
    return 0;
}

long FakeKernel::prog_load(bpf_attr& attr)
{
    ProgLoad& p = prog_loads.emplace_back();
    p.type = attr.prog_type;
    p.name = std::string(attr.prog_name, ::strnlen(attr.prog_name, sizeof attr.prog_name));
    p.prog_btf_fd = attr.prog_btf_fd != 0 ? static_cast<int>(attr.prog_btf_fd) : -1;
    const auto* fi = reinterpret_cast<const bpf_func_info*>(static_cast<uintptr_t>(attr.func_info));
    if (fi != nullptr && attr.func_info_rec_size == sizeof(bpf_func_info))
        p.func_info.assign(fi, fi + attr.func_info_cnt);
    const auto* li = reinterpret_cast<const bpf_line_info*>(static_cast<uintptr_t>(attr.line_info));
    if (li != nullptr && attr.line_info_rec_size == sizeof(bpf_line_info))
        p.line_info.assign(li, li + attr.line_info_cnt);
    p.log_level = attr.log_level;
    const auto refuse = [&](const Answer& a) {
        if (attr.log_size > 0 && attr.log_buf != 0) {
            char* buf = reinterpret_cast<char*>(static_cast<uintptr_t>(attr.log_buf));
            const size_t n = std::min<size_t>(a.log.size(), attr.log_size - 1);
            std::memcpy(buf, a.log.data(), n);
            buf[n] = '\0';
        }
        return fail(a.err);
    };
    if (transient_failures > 0) {
        --transient_failures;
        return fail(EAGAIN);
    }
    if (no_prog_types.count(attr.prog_type) != 0)
        return fail(EINVAL);
    if (const auto a = prog_answers.find(attr.prog_type); a != prog_answers.end())
        return refuse(a->second);
    const std::span<const bpf_insn> insns(reinterpret_cast<const bpf_insn*>(static_cast<uintptr_t>(attr.insns)),
                                          attr.insn_cnt);
    for (auto id : ebpf::insn::helper_calls(insns)) {
        const auto a = helper_answers.find({attr.prog_type, id});
        if (a != helper_answers.end())
            return refuse(a->second);
    }
    p.fd = static_cast<int>(new_fd());
    return p.fd;
}

long FakeKernel::link_create(const bpf_attr& attr)
{
    LinkCreate& l = link_creates.emplace_back();
    l.prog_fd = static_cast<int>(attr.link_create.prog_fd);
    l.target_fd = static_cast<int>(attr.link_create.target_fd);
    l.attach_type = attr.link_create.attach_type;
    l.iter_info_len = attr.link_create.iter_info_len;
    if (attr.link_create.iter_info != 0)
        std::memcpy(&l.iter_info, reinterpret_cast<const void*>(static_cast<uintptr_t>(attr.link_create.iter_info)),
                    std::min<size_t>(sizeof l.iter_info, l.iter_info_len));
    if (link_err != 0)
        return fail(link_err);
    l.fd = static_cast<int>(new_fd());
    return l.fd;
}

long FakeKernel::iter_create(const bpf_attr& attr)
{
    IterCreate& i = iter_creates.emplace_back();
    i.link_fd = static_cast<int>(attr.iter_create.link_fd);
    i.flags = attr.iter_create.flags;
    // A file whose read() gives iter_output and then 0, as the kernel's seq_file does.
    const int fd = ::memfd_create("fake-iter", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (!iter_output.empty() &&
        ::write(fd, iter_output.data(), iter_output.size()) != static_cast<ssize_t>(iter_output.size())) {
        ::close(fd);
        return fail(EIO);
    }
    ::lseek(fd, 0, SEEK_SET);
    i.fd = fd;
    return fd;
}

long FakeKernel::test_run(bpf_attr& attr)
{
    TestRun& t = test_runs.emplace_back();
    t.prog_fd = static_cast<int>(attr.test.prog_fd);
    const auto* data = reinterpret_cast<const std::byte*>(static_cast<uintptr_t>(attr.test.data_in));
    if (data != nullptr)
        t.data.assign(data, data + attr.test.data_size_in);
    t.repeat = attr.test.repeat;
    attr.test.retval = test_run_retval;
    attr.test.duration = 1;
    return 0;
}

long FakeKernel::info(const bpf_attr& attr)
{
    const int fd = static_cast<int>(attr.info.bpf_fd);
    const auto sizes = map_sizes_.find(fd);
    if (sizes == map_sizes_.end() || attr.info.info_len < sizeof(bpf_map_info))
        return fail(EINVAL);
    bpf_map_info m{};
    m.type = map_types_[fd];
    m.key_size = sizes->second.first;
    m.value_size = sizes->second.second;
    std::memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(attr.info.info)), &m, sizeof m);
    return 0;
}

long FakeKernel::btf_load(bpf_attr& attr)
{
    const auto* bytes = reinterpret_cast<const std::byte*>(static_cast<uintptr_t>(attr.btf));
    BtfLoad& b = btf_loads.emplace_back();
    b.blob.assign(bytes, bytes + attr.btf_size);
    b.with_log = attr.btf_log_size > 0 && attr.btf_log_buf != 0;
    if (btf_err != 0)
        return fail(btf_err);
    if (!no_btf_kinds.empty()) {
        const auto btf = elf::parse_btf(b.blob, "fake kernel");
        for (uint32_t id = 1; id < btf.types().size(); ++id) {
            if (no_btf_kinds.count(btf.type(id).kind) == 0)
                continue;
            if (b.with_log) {
                const std::string log = "[" + std::to_string(id) + "] Invalid kind\n";
                char* buf = reinterpret_cast<char*>(static_cast<uintptr_t>(attr.btf_log_buf));
                const size_t n = std::min<size_t>(log.size(), attr.btf_log_size - 1);
                std::memcpy(buf, log.data(), n);
                buf[n] = '\0';
            }
            return fail(EINVAL);
        }
    }
    b.fd = static_cast<int>(new_fd());
    return b.fd;
}

} // namespace sockredir::test
