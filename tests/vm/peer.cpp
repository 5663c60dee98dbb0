// Static test peer for tools/vmtest.sh: a server and a forked client move N MiB over 127.0.0.1, checked byte by byte.
//
// Prints the namespace's TCP segment deltas (/proc/net/snmp) around the transfer and judges them:
// --expect redirected: the data skipped TCP (segments stay near the handshake and teardown count);
// --expect tcp: the data went by TCP segments. Exit 0 when the bytes are intact and the judgement holds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

// Segments of the handshake, the teardown and a few window updates; far below any data-carrying transfer.
constexpr uint64_t kMaxRedirectedSegments = 64;
constexpr size_t kChunk = 64 * 1024;

struct Segments {
    uint64_t in = 0;
    uint64_t out = 0;
};

// Tcp InSegs and OutSegs from /proc/net/snmp: a header line of names, then a line of values.
bool read_segments(Segments& s)
{
    std::ifstream f("/proc/net/snmp");
    std::string names, values;
    while (std::getline(f, names)) {
        if (names.rfind("Tcp:", 0) != 0)
            continue;
        if (!std::getline(f, values))
            return false;
        std::istringstream n(names), v(values);
        std::string name, value;
        bool in = false, out = false;
        while (n >> name && v >> value) {
            if (name == "InSegs")
                in = true, s.in = std::strtoull(value.c_str(), nullptr, 10);
            else if (name == "OutSegs")
                out = true, s.out = std::strtoull(value.c_str(), nullptr, 10);
        }
        return in && out;
    }
    return false;
}

// The byte at stream offset `offset`: cheap, position-dependent, so a lost, duplicated or reordered chunk shows.
unsigned char pattern(uint64_t offset)
{
    uint64_t x = (offset / 8) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return static_cast<unsigned char>(x >> ((offset % 8) * 8));
}

int usage()
{
    std::fprintf(stderr, "usage: sockredir-vm-peer [--mib N] [--expect redirected|tcp]\n");
    return 2;
}

bool write_all(int fd, const unsigned char* p, size_t n)
{
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// Waits for data (poll) and reads without blocking (MSG_DONTWAIT), as an event loop does: sockredir redirects only
// to readers it has seen read that way (a blocking read meets tcp_bpf's EAGAIN: kernel-notes.md section 1).
ssize_t read_some(int fd, void* buf, size_t len)
{
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 30000) != 1) {
            errno = ETIMEDOUT;
            return -1;
        }
        const ssize_t n = ::recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0 || (errno != EINTR && errno != EAGAIN))
            return n;
    }
}

void set_nonblocking(int fd, bool on)
{
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

// The client, in a forked child: connect (non-blocking, as event-driven clients do), one byte each way so that
// both readers are known to sockredir (a direction starts on TCP), then `bytes` of the pattern, close.
int client(uint16_t port, uint64_t bytes)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS)) {
        std::perror("peer client: connect");
        return 1;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, 10000) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        std::fprintf(stderr, "peer client: connect: %s\n", std::strerror(err != 0 ? err : ETIMEDOUT));
        return 1;
    }
    set_nonblocking(fd, false);
    unsigned char hello = 'w';
    if (!write_all(fd, &hello, 1) || read_some(fd, &hello, 1) != 1) {
        std::perror("peer client: warm-up");
        return 1;
    }
    std::vector<unsigned char> buf(kChunk);
    for (uint64_t off = 0; off < bytes;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, bytes - off));
        for (size_t i = 0; i < n; ++i)
            buf[i] = pattern(off + i);
        if (!write_all(fd, buf.data(), n)) {
            std::perror("peer client: send");
            return 1;
        }
        off += n;
    }
    ::close(fd);
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    uint64_t mib = 16;
    std::string expect;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--mib" && i + 1 < argc)
            mib = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--expect" && i + 1 < argc)
            expect = argv[++i];
        else
            return usage();
    }
    if (mib == 0 || (!expect.empty() && expect != "redirected" && expect != "tcp"))
        return usage();
    const uint64_t bytes = mib << 20;

    Segments before{}, after{};
    if (!read_segments(before)) {
        std::printf("peer: FAIL cannot read Tcp segments from /proc/net/snmp\n");
        return 1;
    }
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        std::printf("peer: FAIL listen on 127.0.0.1: %s\n", std::strerror(errno));
        return 1;
    }
    const uint16_t port = ntohs(a.sin_port);
    const auto start = std::chrono::steady_clock::now();
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::printf("peer: FAIL fork: %s\n", std::strerror(errno));
        return 1;
    }
    if (pid == 0)
        ::_exit(client(port, bytes));

    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
        std::printf("peer: FAIL accept: %s\n", std::strerror(errno));
        return 1;
    }
    std::vector<unsigned char> buf(kChunk);
    uint64_t got = 0;
    std::string error;
    unsigned char hello = 0;
    if (read_some(fd, &hello, 1) != 1 || !write_all(fd, &hello, 1))
        error = std::string("warm-up: ") + std::strerror(errno);
    for (; error.empty();) {
        const ssize_t n = read_some(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = std::string("recv: ") + std::strerror(errno);
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n && error.empty(); ++i)
            if (buf[static_cast<size_t>(i)] != pattern(got + static_cast<uint64_t>(i)))
                error = "wrong byte at offset " + std::to_string(got + static_cast<uint64_t>(i));
        if (!error.empty())
            break;
        got += static_cast<uint64_t>(n);
    }
    ::close(fd);
    ::close(lfd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (error.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        error = "the client failed";
    if (error.empty() && got != bytes)
        error = "received " + std::to_string(got) + " of " + std::to_string(bytes) + " bytes";
    if (!read_segments(after)) {
        std::printf("peer: FAIL cannot read Tcp segments from /proc/net/snmp\n");
        return 1;
    }
    const uint64_t in = after.in - before.in, out = after.out - before.out;
    std::printf("peer: %llu bytes %s in %.2f s (%.1f MiB/s), tcp segments in=%llu out=%llu\n",
                static_cast<unsigned long long>(got), error.empty() ? "intact" : "NOT intact", seconds,
                seconds > 0 ? static_cast<double>(got) / (1 << 20) / seconds : 0.0, static_cast<unsigned long long>(in),
                static_cast<unsigned long long>(out));
    if (!error.empty()) {
        std::printf("peer: FAIL %s\n", error.c_str());
        return 1;
    }
    // Loopback's MTU is 65536: by TCP, every 64 KiB of data is at least one segment.
    const uint64_t min_tcp_segments = bytes / 65536;
    if (expect == "redirected" && out > kMaxRedirectedSegments) {
        std::printf("peer: FAIL not redirected: %llu segments out, expected at most %llu\n",
                    static_cast<unsigned long long>(out), static_cast<unsigned long long>(kMaxRedirectedSegments));
        return 1;
    }
    if (expect == "tcp" && out < min_tcp_segments) {
        std::printf("peer: FAIL expected TCP: %llu segments out, expected at least %llu\n",
                    static_cast<unsigned long long>(out), static_cast<unsigned long long>(min_tcp_segments));
        return 1;
    }
    std::printf("peer: OK%s%s\n", expect.empty() ? "" : " ", expect.c_str());
    return 0;
}
