// Static test peer for tools/vmtest.sh: a server and a forked client move N MiB over 127.0.0.1, checked byte by byte.
//
// Prints the namespace's TCP segment deltas (/proc/net/snmp) around the transfer and judges them:
// --expect redirected: the data skipped TCP (segments stay near the handshake and teardown count);
// --expect tcp: the data went by TCP segments. Exit 0 when the bytes are intact and the judgement holds.
//
// --pool N --detach PROGRAM: N long-lived connections talk both ways while PROGRAM detach runs (sockredir-min, already
// attached); then every socket must be out of the sockhash and on TCP, no sockredir program or map left in the
// kernel while the connections still live, every byte intact, and a blocking reader taking a 0.7 ms SA_RESTART timer
// must get EAGAIN before the detach (the sockmap path) and none after it (TCP).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>

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
// Bulk writes, which redirection carries faster: a stream of writes of 64 KiB or less that nobody answers is moved
// to TCP after 64 of them (the adaptive path).
constexpr size_t kChunk = 256 * 1024;

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
    std::fprintf(stderr, "usage: sockredir-vm-peer [--mib N] [--expect redirected|tcp]\n"
                         "       sockredir-vm-peer --pool N --detach PROGRAM\n");
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

// --- --pool: long-lived connections through a detach -------------------------------------------------------------

long bpf(int cmd, bpf_attr& attr)
{
    return ::syscall(SYS_bpf, cmd, &attr, sizeof attr);
}

// The names of sockredir's programs and maps still in the kernel (this VM runs nothing else of the kind).
std::string sockredir_objects()
{
    std::string found;
    for (const int cmd : {BPF_PROG_GET_NEXT_ID, BPF_MAP_GET_NEXT_ID}) {
        uint32_t id = 0;
        for (;;) {
            bpf_attr next{};
            next.start_id = id;
            if (bpf(cmd, next) != 0)
                break;
            id = next.next_id;
            bpf_attr get{};
            if (cmd == BPF_PROG_GET_NEXT_ID)
                get.prog_id = id;
            else
                get.map_id = id;
            const long fd = bpf(cmd == BPF_PROG_GET_NEXT_ID ? BPF_PROG_GET_FD_BY_ID : BPF_MAP_GET_FD_BY_ID, get);
            if (fd < 0)
                continue;
            char name[BPF_OBJ_NAME_LEN] = {};
            bpf_attr info{};
            info.info.bpf_fd = static_cast<uint32_t>(fd);
            if (cmd == BPF_PROG_GET_NEXT_ID) {
                bpf_prog_info p{};
                info.info.info_len = sizeof p;
                info.info.info = reinterpret_cast<uintptr_t>(&p);
                if (bpf(BPF_OBJ_GET_INFO_BY_FD, info) == 0)
                    std::memcpy(name, p.name, sizeof name);
            } else {
                bpf_map_info m{};
                info.info.info_len = sizeof m;
                info.info.info = reinterpret_cast<uintptr_t>(&m);
                if (bpf(BPF_OBJ_GET_INFO_BY_FD, info) == 0)
                    std::memcpy(name, m.name, sizeof name);
            }
            ::close(static_cast<int>(fd));
            name[sizeof name - 1] = '\0';
            const std::string n = name;
            if (n.rfind("sockredir_", 0) == 0 || n == "sock_hash" || n == "counters" || n == "config" ||
                n == "path_state" || n == "unmap_batch")
                found += (found.empty() ? "" : " ") + n + "#" + std::to_string(id);
        }
    }
    return found;
}

std::atomic<int> g_phase{0}; // 0 before the detach, 1 during, 2 after
std::atomic<uint64_t> g_eagain[3];
std::atomic<bool> g_stop{false};

void on_alarm(int) {}

struct Stream {
    int out = -1, in = -1;
    uint64_t seed = 0;
    size_t chunk = 4096;
    int pause_us = 5000;
    bool timer = false; // its reader takes the interval timer and counts EAGAINs
    std::atomic<uint64_t> sent{0}, received{0};
    std::string error;
};

unsigned char stream_byte(const Stream& s, uint64_t offset)
{
    return pattern(offset + s.seed * 0x1000003ULL);
}

void send_stream(Stream& s)
{
    std::vector<unsigned char> buf(s.chunk);
    while (!g_stop.load()) {
        // At most 1 MiB ahead of the reader: the redirect path bounds nothing itself.
        if (s.sent.load() - s.received.load() > (1U << 20)) {
            ::usleep(1000);
            continue;
        }
        for (size_t i = 0; i < buf.size(); ++i)
            buf[i] = stream_byte(s, s.sent.load() + i);
        if (!write_all(s.out, buf.data(), buf.size())) {
            s.error = std::string("send: ") + std::strerror(errno);
            break;
        }
        s.sent += buf.size();
        ::usleep(static_cast<useconds_t>(s.pause_us));
    }
    ::shutdown(s.out, SHUT_WR);
}

void receive_stream(Stream& s)
{
    if (s.timer) {
        sigset_t alarm;
        sigemptyset(&alarm);
        sigaddset(&alarm, SIGALRM);
        pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
        itimerval t{};
        t.it_interval.tv_usec = 700;
        t.it_value.tv_usec = 700;
        setitimer(ITIMER_REAL, &t, nullptr);
    }
    std::vector<unsigned char> buf(64 * 1024);
    for (;;) {
        // As an event loop reads until the detach is done (a blocking reader never stays in the map); the timer
        // reader then reads with plain blocking recv() calls: on plain TCP they get no EAGAIN.
        const int phase = g_phase.load();
        const bool blocking = s.timer && phase == 2;
        if (!blocking) {
            pollfd p{s.in, POLLIN, 0};
            if (::poll(&p, 1, 100) == 0)
                continue;
        }
        const ssize_t n = ::recv(s.in, buf.data(), buf.size(), blocking ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN && !blocking)
            continue;
        if (n < 0 && errno == EAGAIN) {
            ++g_eagain[phase];
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                s.error = std::string("recv: ") + std::strerror(errno);
            break;
        }
        for (ssize_t i = 0; i < n; ++i)
            if (buf[static_cast<size_t>(i)] != stream_byte(s, s.received.load() + static_cast<uint64_t>(i))) {
                s.error = "wrong byte at offset " + std::to_string(s.received.load() + static_cast<uint64_t>(i));
                return;
            }
        s.received += static_cast<uint64_t>(n);
    }
    if (s.timer) {
        itimerval off{};
        setitimer(ITIMER_REAL, &off, nullptr);
    }
}

// Runs `program detach` and returns its exit status, its output in `out`.
int run_detach(const std::string& program, std::string& out)
{
    int p[2];
    if (::pipe(p) != 0)
        return -1;
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(p[1], 1);
        ::dup2(p[1], 2);
        ::close(p[0]);
        ::close(p[1]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execl(program.c_str(), program.c_str(), "detach", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(p[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            out.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

double seconds_since(std::chrono::steady_clock::time_point t)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int pool(int connections, const std::string& program)
{
    // Only the timer reader takes SIGALRM: every thread is started with it blocked.
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, nullptr);

    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, connections) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        std::printf("peer: FAIL listen: %s\n", std::strerror(errno));
        return 1;
    }
    std::vector<std::unique_ptr<Stream>> streams;
    for (int i = 0; i < connections; ++i) {
        // Connected in non-blocking mode (a client blocking at connect() never enters the map), then one byte
        // each way so both readers are seen and both directions redirected.
        const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c < 0 || (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS)) {
            std::printf("peer: FAIL connect: %s\n", std::strerror(errno));
            return 1;
        }
        const int s = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        pollfd w{c, POLLOUT, 0};
        if (s < 0 || ::poll(&w, 1, 10000) != 1) {
            std::printf("peer: FAIL accept: %s\n", std::strerror(errno));
            return 1;
        }
        set_nonblocking(c, false);
        unsigned char hello = 'w';
        if (!write_all(c, &hello, 1) || read_some(s, &hello, 1) != 1 || !write_all(s, &hello, 1) ||
            read_some(c, &hello, 1) != 1) {
            std::printf("peer: FAIL warm-up: %s\n", std::strerror(errno));
            return 1;
        }
        for (int dir = 0; dir < 2; ++dir) {
            auto st = std::make_unique<Stream>();
            st->out = dir == 0 ? c : s;
            st->in = dir == 0 ? s : c;
            st->seed = static_cast<uint64_t>(i * 2 + dir);
            // Connection 0's server gets small, rare messages, takes the timer, and reads blocking after the detach.
            if (i == 0 && dir == 0) {
                st->timer = true;
                st->chunk = 256;
                st->pause_us = 2000;
            }
            streams.push_back(std::move(st));
        }
    }
    ::usleep(100000); // both ends of each connection in the map before any byte
    std::vector<std::thread> threads;
    for (auto& st : streams) {
        threads.emplace_back(receive_stream, std::ref(*st));
        threads.emplace_back(send_stream, std::ref(*st));
    }
    ::sleep(2);
    const std::string before = sockredir_objects();
    g_phase = 1;
    std::string out;
    const auto start = std::chrono::steady_clock::now();
    const int rc = run_detach(program, out);
    const double took = seconds_since(start);
    g_phase = 2;
    std::printf("peer: detach exit %d in %.3f s: %s", rc, took, out.c_str());
    std::string error;
    if (rc != 0)
        error = "detach exited " + std::to_string(rc);
    const std::string handed =
        std::to_string(2 * connections) + " of " + std::to_string(2 * connections) + " socket(s) back on TCP";
    if (error.empty() && out.find(handed) == std::string::npos)
        error = "detach did not hand every socket back (" + handed + ")";
    // The sockets' psocks go after an RCU grace period, the maps from a workqueue: give them a few seconds.
    std::string left = sockredir_objects();
    for (int i = 0; i < 100 && !left.empty(); ++i) {
        ::usleep(50000);
        left = sockredir_objects();
    }
    if (error.empty() && !left.empty())
        error = "left in the kernel after the detach, with the connections open: " + left;
    ::sleep(2); // TCP traffic on every connection, and the timer reader blocked in recv() again
    g_stop = true;
    for (auto& t : threads)
        t.join();
    uint64_t bytes = 0;
    for (const auto& st : streams) {
        bytes += st->received.load();
        if (error.empty() && !st->error.empty())
            error = st->error;
        if (error.empty() && st->received.load() != st->sent.load())
            error = "sent " + std::to_string(st->sent.load()) + ", received " + std::to_string(st->received.load());
    }
    std::printf("peer: pool of %d: %llu bytes intact; objects before the detach: %s; EAGAIN of the timer reader: %llu "
                "before, %llu during, %llu after\n",
                connections, static_cast<unsigned long long>(bytes), before.c_str(),
                static_cast<unsigned long long>(g_eagain[0].load()),
                static_cast<unsigned long long>(g_eagain[1].load()),
                static_cast<unsigned long long>(g_eagain[2].load()));
    // That the connections were on the sockmap path before the detach is what "N of N back on TCP" says: the
    // map held all of them.
    if (error.empty() && g_eagain[2].load() != 0)
        error = std::to_string(g_eagain[2].load()) + " EAGAIN after the detach: not plain TCP";
    if (!error.empty()) {
        std::printf("peer: FAIL %s\n", error.c_str());
        return 1;
    }
    std::printf("peer: OK pool\n");
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    uint64_t mib = 16;
    std::string expect;
    int pool_size = 0;
    std::string detach_program;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--mib" && i + 1 < argc)
            mib = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--expect" && i + 1 < argc)
            expect = argv[++i];
        else if (a == "--pool" && i + 1 < argc)
            pool_size = std::atoi(argv[++i]);
        else if (a == "--detach" && i + 1 < argc)
            detach_program = argv[++i];
        else
            return usage();
    }
    if (pool_size > 0 || !detach_program.empty()) {
        if (pool_size <= 0 || detach_program.empty())
            return usage();
        return pool(pool_size, detach_program);
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
