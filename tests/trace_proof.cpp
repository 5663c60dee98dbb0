// The receive-path tracing proof: one watched loopback connection, read blocking and then non-blocking.
#include "tests/trace_proof.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::test {

namespace {

using base::Fd;
namespace sys = ebpf::sys;

// struct trace_counts of tests/data/trace_common.h.
struct TraceCounts {
    uint64_t cookie;
    uint64_t bytes;
    uint64_t calls;
    uint64_t nonblocking_calls;
};
static_assert(sizeof(TraceCounts) == 32);

constexpr size_t kBlockingBytes = 256 * 1024;
constexpr size_t kNonblockingBytes = 64 * 1024;

[[noreturn]] void fail(const std::string& what)
{
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

Fd check_fd(int fd, const char* what)
{
    if (fd < 0)
        fail(what);
    return Fd(fd);
}

void send_all(int fd, size_t bytes)
{
    std::vector<char> buf(16384, 'x');
    while (bytes > 0) {
        const ssize_t n = ::send(fd, buf.data(), std::min(bytes, buf.size()), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("send");
        bytes -= static_cast<size_t>(n);
    }
}

} // namespace

TraceProof prove_recv_tracing(std::span<const std::byte> object, const std::string& pin_dir)
{
    const ebpf::CollectionSpec spec = ebpf::open_object(object);
    if (spec.programs.size() != 1)
        throw std::runtime_error("the trace object must hold exactly one program");
    TraceProof p;
    p.program = spec.programs.begin()->name;
    p.section = spec.programs.begin()->section;

    auto c = std::make_unique<ebpf::Collection>(ebpf::load_collection(spec));
    const uint32_t prog_id = sys::prog_info(c->programs.at(p.program).fd.get()).id;

    // The watched connection, on loopback.
    Fd listener = check_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        fail("listen on 127.0.0.1");
    Fd client = check_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        fail("connect");
    Fd server = check_fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept");
    TraceCounts counts{};
    socklen_t cookie_len = sizeof counts.cookie;
    if (::getsockopt(server.get(), SOL_SOCKET, SO_COOKIE, &counts.cookie, &cookie_len) != 0)
        fail("SO_COOKIE");
    const uint32_t zero = 0;
    sys::map_update(c->maps.at("trace_counts").fd.get(), &zero, &counts, BPF_ANY);

    // Attach through a link, pinned and found again by its path, as sockredir's links are.
    const std::string link_path = pin_dir + "/trace_link";
    {
        Fd link = sys::raw_tracepoint_open(c->programs.at(p.program).fd.get());
        sys::obj_pin(link.get(), link_path);
    }
    {
        Fd pinned = sys::obj_get(link_path);
        p.link_pinned = sys::link_info(pinned.get()).prog_id == prog_id;
    }

    // Blocking reads while the other end writes, then non-blocking reads driven by poll.
    std::thread writer([&] { send_all(client.get(), kBlockingBytes); });
    std::vector<char> buf(8192);
    while (p.bytes_read < kBlockingBytes) {
        const ssize_t n = ::recv(server.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            fail("blocking recv");
        p.bytes_read += static_cast<uint64_t>(n);
        ++p.reads;
    }
    writer.join();
    if (::fcntl(server.get(), F_SETFL, ::fcntl(server.get(), F_GETFL) | O_NONBLOCK) != 0)
        fail("O_NONBLOCK");
    send_all(client.get(), kNonblockingBytes);
    uint64_t nonblocking_bytes = 0;
    while (nonblocking_bytes < kNonblockingBytes) {
        pollfd pfd{server.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 5000) <= 0)
            fail("poll");
        const ssize_t n = ::recv(server.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            fail("non-blocking recv");
        nonblocking_bytes += static_cast<uint64_t>(n);
        ++p.reads;
        ++p.nonblocking_reads;
    }
    p.bytes_read += nonblocking_bytes;

    if (!sys::map_lookup(c->maps.at("trace_counts").fd.get(), &zero, &counts))
        throw std::runtime_error("trace_counts has no entry 0");
    p.counted_bytes = counts.bytes;
    p.counted_calls = counts.calls;
    p.counted_nonblocking = counts.nonblocking_calls;

    // Detach: the pin goes, the collection closes, and the kernel frees the program.
    if (::unlink(link_path.c_str()) != 0)
        fail("unlink " + link_path);
    c.reset();
    for (int waited = 0; waited < 5000 && !p.detached; waited += 50) {
        try {
            (void)sys::prog_fd_by_id(prog_id);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        } catch (const base::Error& e) {
            p.detached = e.code() == ENOENT;
            if (!p.detached)
                throw;
        }
    }
    return p;
}

std::string describe(const TraceProof& p)
{
    return "program=" + p.program + " section=" + p.section + " bytes_read=" + std::to_string(p.bytes_read) +
           " counted_bytes=" + std::to_string(p.counted_bytes) + " reads=" + std::to_string(p.reads) +
           " counted_calls=" + std::to_string(p.counted_calls) +
           " nonblocking_reads=" + std::to_string(p.nonblocking_reads) +
           " counted_nonblocking=" + std::to_string(p.counted_nonblocking) +
           " link_pinned=" + (p.link_pinned ? "yes" : "no") + " detached=" + (p.detached ? "yes" : "no");
}

} // namespace sockredir::test
