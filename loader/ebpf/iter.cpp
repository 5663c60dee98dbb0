// BPF iterators: the map link and one run read to EOF.
#include "loader/ebpf/iter.hpp"

#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>

#include "loader/base/error.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::ebpf {

using base::Error;

namespace {

// Large enough that one read() takes a whole walk of a map whose program writes little (the kernel's own buffer
// is 8 pages); a run that writes more takes several reads.
constexpr size_t kReadSize = 64 * 1024;

} // namespace

Fd link_map_iterator(int prog_fd, int map_fd)
{
    bpf_iter_link_info info{};
    info.map.map_fd = static_cast<uint32_t>(map_fd);
    // No target fd: the map in iter_info is the target.
    return sys::link_create(prog_fd, 0, BPF_TRACE_ITER, &info);
}

std::vector<std::byte> run_iterator(int link_fd)
{
    const Fd iter = sys::iter_create(link_fd);
    std::vector<std::byte> out;
    for (;;) {
        const size_t have = out.size();
        out.resize(have + kReadSize);
        const ssize_t n = ::read(iter.get(), out.data() + have, kReadSize);
        if (n < 0) {
            out.resize(have);
            // EAGAIN: the kernel stopped after its maximum of elements per read() with nothing written; go on.
            if (errno == EINTR || errno == EAGAIN)
                continue;
            throw Error("read", "reading the iterator's output", errno);
        }
        out.resize(have + static_cast<size_t>(n));
        if (n == 0)
            return out;
    }
}

} // namespace sockredir::ebpf
