// Static test peer for tools/vmtest.sh: a server and a forked client move N MiB over 127.0.0.1, checked byte by byte.
//
// Both ends are event-driven, as sockredir wants them: non-blocking sockets, poll() and MSG_DONTWAIT, and a first
// byte each way (sockredir redirects a direction only once its reader has been seen reading that way; a client that
// is blocking when it connects stays off the map). The client waits for a one-byte acknowledgement after each MiB,
// as request/response protocols do: sockredir's flow control passes a direction to TCP while its reader lags by more
// than --max-inflight, and in a one-CPU VM a sender that never waits outruns its reader.
//
// Prints the namespace's TCP segment deltas (/proc/net/snmp) around the transfer and judges them:
// --expect redirected: the data skipped TCP (segments stay near the handshake and teardown count);
// --expect tcp: the data went by TCP segments. Exit 0 when the bytes are intact and the judgement holds.
#include <arpa/inet.h>
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
constexpr uint64_t kWindow = 1 << 20; // the client waits for an acknowledgement after each
constexpr int kTimeoutMs = 30000;     // for any one wait

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

// poll() one descriptor for `events`, up to kTimeoutMs: false on a timeout or an error.
bool wait_for(int fd, short events)
{
    pollfd p{fd, events, 0};
    for (;;) {
        const int r = ::poll(&p, 1, kTimeoutMs);
        if (r < 0 && errno == EINTR)
            continue;
        return r > 0;
    }
}

// send() on a non-blocking socket until all of it is taken, poll() for POLLOUT when it is full.
bool write_all(int fd, const unsigned char* p, size_t n)
{
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN && wait_for(fd, POLLOUT))
                continue;
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// One byte from a non-blocking socket, poll() for POLLIN first: the byte, or -1 (EOF, error, timeout).
int read_byte(int fd)
{
    for (;;) {
        unsigned char b = 0;
        const ssize_t r = ::recv(fd, &b, 1, MSG_DONTWAIT);
        if (r == 1)
            return b;
        if (r == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || !wait_for(fd, POLLIN))
            return -1;
    }
}

// The client, in a forked child: connect (non-blocking), a byte each way, `bytes` of the pattern with an
// acknowledgement awaited after each kWindow, close.
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
    int err = 0;
    socklen_t len = sizeof err;
    if (!wait_for(fd, POLLOUT) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        std::fprintf(stderr, "peer client: connect: %s\n", std::strerror(err));
        return 1;
    }
    const unsigned char hello = 'w';
    if (!write_all(fd, &hello, 1) || read_byte(fd) != 'w') {
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
        if (off % kWindow == 0 && off < bytes && read_byte(fd) != 'a') {
            std::perror("peer client: acknowledgement");
            return 1;
        }
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

    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        std::printf("peer: FAIL accept: %s\n", std::strerror(errno));
        return 1;
    }
    std::vector<unsigned char> buf(kChunk);
    uint64_t got = 0;
    std::string error;
    const unsigned char hello = 'w', ack = 'a';
    if (read_byte(fd) != 'w' || !write_all(fd, &hello, 1))
        error = "the warm-up byte did not come";
    while (error.empty()) {
        // Never past the window: the acknowledgement is due exactly at its end.
        const uint64_t window_left = kWindow - got % kWindow;
        const ssize_t n = ::recv(fd, buf.data(), std::min<uint64_t>(buf.size(), window_left), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!wait_for(fd, POLLIN))
                error = "no data for 30 s";
            continue;
        }
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
        if (got % kWindow == 0 && got < bytes && !write_all(fd, &ack, 1))
            error = std::string("acknowledgement: ") + std::strerror(errno);
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
