// Scenarios: zero-copy paths. splice() from a socket through a pipe to another socket (a proxy), sendfile() from a
// file, vmsplice() into a pipe spliced to a socket, and a reader that reads with splice() (what haproxy does). On
// non-blocking sockets, as a proxy's event loop uses them: a socket that is full says EAGAIN, and poll() says when
// to go on.
#include "tests/conform/scen_helpers.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace conform;
using namespace conform::helpers;

struct Pipe {
    Fd read;
    Fd write;
};

Pipe make_pipe()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe2: " + errno_name(errno));
    }
    return {Fd(fds[0]), Fd(fds[1])};
}

// Splices from a non-blocking socket into a pipe, 64 KiB at a time, and hands each piece to `take` (which empties the
// pipe), until EOF, an error or timeout_ms. Returns the bytes taken and sets *end ("eof", "timeout", errno name).
template <typename Take>
long long splice_from_socket(int sock, const Pipe& pipe, int timeout_ms, std::string* end, Take take)
{
    Deadline deadline(timeout_ms);
    long long total = 0;
    for (;;) {
        ssize_t n = ::splice(sock, nullptr, pipe.write.get(), nullptr, 64 * kKiB, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0) {
            if (!take(static_cast<size_t>(n))) {
                *end = "could not empty the pipe";
                return total;
            }
            total += n;
            continue;
        }
        if (n == 0) {
            *end = "eof";
            return total;
        }
        if (errno != EAGAIN && errno != EINTR) {
            *end = errno_name(errno);
            return total;
        }
        if (deadline.passed()) {
            *end = "timeout";
            return total;
        }
        // Readiness may say "readable" while splice() finds nothing: sleep a little instead of spinning.
        if (wait_readable(sock, std::min(deadline.left_ms(), 100))) {
            sleep_ms(1);
        }
    }
}

// Splices exactly n bytes from the pipe to a socket, waiting in poll() for POLLOUT while the socket is full (5 s at
// most).
bool splice_to_socket(const Pipe& pipe, int sock, size_t n)
{
    Deadline deadline(5000);
    while (n > 0) {
        ssize_t m = ::splice(pipe.read.get(), nullptr, sock, nullptr, n, SPLICE_F_MOVE);
        if (m < 0 && errno == EINTR) {
            continue;
        }
        if (m < 0 && errno == EAGAIN && !deadline.passed()) {
            wait_writable(sock, std::min(deadline.left_ms(), 100));
            continue;
        }
        if (m <= 0) {
            return false;
        }
        n -= static_cast<size_t>(m);
    }
    return true;
}

} // namespace

CONFORM_SCENARIO(splice_socket_to_socket, "splice", "A proxy splices socket -> pipe -> socket: every byte through")
{
    Pair inbound = make_pair(nonblocking());  // client -> proxy
    Pair outbound = make_pair(nonblocking()); // proxy (server end) -> final reader (client end)
    Pipe pipe = make_pipe();
    const uint32_t seed = 401;
    constexpr size_t total = kMiB + 3;
    const int source = inbound.client.get();
    const int sink = outbound.client.get();
    Sent sent;
    Read got;
    Thread sender(
        [&] {
            sent = send_stream(source, seed, 0, total, 64 * kKiB, 8000);
            ::shutdown(source, SHUT_WR);
        },
        [source] { ::shutdown(source, SHUT_RDWR); });
    Thread reader([&] { got = read_stream(sink, seed, 0, total, 8000, true); }, {});

    std::string end;
    const int proxy_out = outbound.server.get();
    long long relayed = splice_from_socket(inbound.server.get(), pipe, 4000, &end,
                                           [&](size_t n) { return splice_to_socket(pipe, proxy_out, n); });
    ::shutdown(proxy_out, SHUT_WR);
    obs.note("proxy's splice ended by", end);
    obs.note("proxy relayed", relayed);
    sender.join();
    note_sent(obs, "sender sent", sent);
    reader.join();
    note_read(obs, "final reader", got);
}

CONFORM_SCENARIO(sendfile_file_to_socket, "splice", "sendfile() from a file to a socket: every byte arrives")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 402;
    constexpr size_t total = kMiB + 5;
    Fd file(::memfd_create("conform-sendfile", MFD_CLOEXEC));
    std::vector<unsigned char> data(total);
    pattern(seed, 0, data.data(), data.size());
    bool written = file && ::write(file.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size());
    obs.flag("file written", written);
    const int fd = pair.client.get();
    const int file_fd = file.get();
    long long sent = 0;
    std::string error = "none";
    Thread sender(
        [&] {
            off_t offset = 0;
            Deadline deadline(8000);
            while (static_cast<size_t>(offset) < total) {
                ssize_t r = ::sendfile(fd, file_fd, &offset, total - static_cast<size_t>(offset));
                if (r < 0 && errno == EINTR) {
                    continue;
                }
                if (r < 0 && errno == EAGAIN && !deadline.passed()) {
                    wait_writable(fd, std::min(deadline.left_ms(), 100));
                    continue;
                }
                if (r <= 0) {
                    error = r < 0 ? errno_name(errno) : "sendfile returned 0";
                    break;
                }
            }
            sent = offset;
            ::shutdown(fd, SHUT_WR);
        },
        [fd] { ::shutdown(fd, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 8000, true));
    sender.join();
    obs.note("sendfile sent", sent);
    obs.note("sendfile error", error);
}

CONFORM_SCENARIO(vmsplice_pipe_to_socket, "splice", "vmsplice() into a pipe, splice() to a socket: every byte arrives")
{
    Pair pair = make_pair(nonblocking());
    Pipe pipe = make_pipe();
    const uint32_t seed = 403;
    constexpr size_t total = 256 * kKiB + 9;
    // vmsplice() without SPLICE_F_GIFT lends these pages: they stay untouched until the reader has read them.
    std::vector<unsigned char> data(total);
    pattern(seed, 0, data.data(), data.size());
    const int fd = pair.client.get();
    long long moved = 0;
    std::string error = "none";
    Thread sender(
        [&] {
            size_t done = 0;
            while (done < total) {
                iovec iov{data.data() + done, std::min<size_t>(64 * kKiB, total - done)};
                ssize_t r = ::vmsplice(pipe.write.get(), &iov, 1, 0);
                if (r < 0 && errno == EINTR) {
                    continue;
                }
                if (r <= 0) {
                    error = "vmsplice: " + (r < 0 ? errno_name(errno) : std::string("0"));
                    break;
                }
                if (!splice_to_socket(pipe, fd, static_cast<size_t>(r))) {
                    error = "splice: " + errno_name(errno);
                    break;
                }
                done += static_cast<size_t>(r);
            }
            moved = static_cast<long long>(done);
            ::shutdown(fd, SHUT_WR);
        },
        [fd] { ::shutdown(fd, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 8000, true));
    sender.join();
    obs.note("bytes moved", moved);
    obs.note("error", error);
}

CONFORM_SCENARIO(splice_reader, "splice", "A reader that reads with splice() socket -> pipe gets every byte and EOF")
{
    Pair pair = make_pair(nonblocking());
    Pipe pipe = make_pipe();
    const uint32_t seed = 404;
    constexpr size_t total = 256 * kKiB + 1;
    const int fd = pair.client.get();
    Sent sent;
    Thread sender(
        [&] {
            sent = send_stream(fd, seed, 0, total, 16 * kKiB, 8000);
            ::shutdown(fd, SHUT_WR);
        },
        [fd] { ::shutdown(fd, SHUT_RDWR); });

    bool intact = true;
    uint64_t offset = 0;
    std::vector<unsigned char> buf(64 * kKiB);
    std::string end;
    long long got = splice_from_socket(pair.server.get(), pipe, 4000, &end, [&](size_t n) {
        while (n > 0) {
            ssize_t r = ::read(pipe.read.get(), buf.data(), std::min(n, buf.size()));
            if (r <= 0) {
                return false;
            }
            intact = intact && check_pattern(seed, offset, buf.data(), static_cast<size_t>(r));
            offset += static_cast<uint64_t>(r);
            n -= static_cast<size_t>(r);
        }
        return true;
    });
    obs.note("splice reader ended by", end);
    obs.note("splice reader bytes", got);
    obs.flag("splice reader intact", intact && offset <= total);
    sender.join();
    note_sent(obs, "sender sent", sent);
}
