// Conformance scenarios, first half: reads and writes, signals, threads sharing a socket, shutdown and close, the
// receive flags (MSG_WAITALL, MSG_PEEK, MSG_TRUNC, SO_PEEK_OFF) and the receive and send options (SO_RCVLOWAT,
// SO_RCVTIMEO, SO_SNDTIMEO). Each story is shaped so that plain TCP's answer does not depend on timing.
//
// A story whose question does not depend on blocking calls is told on non-blocking sockets (poll() and send()/recv()
// with MSG_DONTWAIT, as an event-driven server does), so that it runs redirected. A story about blocking behaviour
// (a blocking recv() and signals, MSG_WAITALL, SO_RCVTIMEO, a thread blocked in recv()) keeps its blocking sockets:
// sockredir keeps those on TCP, and the suite shows that it does so safely; its twin NAME_nb asks the same question
// of non-blocking sockets.
#include "tests/conform/scen_helpers.hpp"
#include "tests/conform/scenario.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <latch>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace conform;
namespace h = conform::helpers;

constexpr size_t kLarge = 4 * 1024 * 1024; // well past the default socket buffers (tcp_rmem 128 KiB)
constexpr int kWatchdogMs = 4000;

// Shuts the sockets down if the story has not finished in time: a reader blocked for good wakes (TCP returns 0 after
// SHUT_RD), and the story records that the watchdog fired instead of running into the harness's kill.
class Watchdog {
public:
    Watchdog(std::vector<int> fds, int ms = kWatchdogMs) : fds_(std::move(fds)), thread_([this, ms] { run(ms); }) {}
    ~Watchdog() { stop(); }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // Stops the clock (joins); true when it had fired.
    bool stop()
    {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable())
            thread_.join();
        return fired_;
    }

private:
    void run(int ms)
    {
        std::unique_lock lock(mutex_);
        if (cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return done_; }))
            return;
        fired_ = true;
        for (const int fd : fds_)
            ::shutdown(fd, SHUT_RDWR);
    }

    std::vector<int> fds_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
    std::atomic<bool> fired_ = false;
    std::thread thread_;
};

std::vector<unsigned char> bytes(uint32_t seed, uint64_t offset, size_t len)
{
    std::vector<unsigned char> b(len);
    pattern(seed, offset, b.data(), len);
    return b;
}

// One send() call of [offset, offset + len) of stream `seed`.
long long send_once(int fd, uint32_t seed, uint64_t offset, size_t len)
{
    const auto b = bytes(seed, offset, len);
    return ::send(fd, b.data(), len, MSG_NOSIGNAL); // free() keeps errno (glibc 2.33+)
}

// One recv() call into a buffer of `cap`: records its result under `key`, and whether the bytes are stream `seed` from
// `offset`. Returns the result.
long long recv_once(Obs& obs, const std::string& key, int fd, size_t cap, uint32_t seed, uint64_t offset, int flags = 0)
{
    std::vector<unsigned char> buf(cap);
    const ssize_t r = ::recv(fd, buf.data(), cap, flags);
    obs.ret(key, r);
    if (r > 0)
        obs.flag(key + " intact", check_pattern(seed, offset, buf.data(), static_cast<size_t>(r)));
    return r;
}

// Reads `len` bytes of stream `seed` from `offset` and records how many arrived and whether they are intact.
void read_rest(Obs& obs, const std::string& key, int fd, uint32_t seed, uint64_t offset, size_t len)
{
    bool intact = false;
    const long long n = recv_pattern(fd, seed, offset, len, &intact);
    obs.ret(key, n);
    if (n > 0)
        obs.flag(key + " intact", intact);
}

// A client-to-server exchange first, so that the connection is shown taking the redirect path (the harness reads
// the redirect counter) before the part of the story that matters.
void warm_up(Obs& obs, const Pair& p, uint32_t seed)
{
    obs.ret("warm-up send", send_once(p.client.get(), seed, 0, 100));
    read_rest(obs, "warm-up recv", p.server.get(), seed, 0, 100);
}

void set_timeout(int fd, int name, int ms)
{
    const timeval tv{ms / 1000, (ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, name, &tv, sizeof tv);
}

// --- reads and writes ------------------------------------------------------------------------------------------------

CONFORM_SCENARIO(read_blocking_small, "read and write", "blocking recv() of a 100-byte write returns it whole")
{
    Pair p = make_pair();
    obs.ret("send", send_once(p.client.get(), 1, 0, 100));
    recv_once(obs, "recv", p.server.get(), 4096, 1, 0);
}

CONFORM_SCENARIO(read_blocking_exact, "read and write",
                 "blocking recv() with a buffer of exactly the write's size (4 KiB), then nothing more")
{
    Pair p = make_pair();
    obs.ret("send", send_once(p.client.get(), 2, 0, 4096));
    recv_once(obs, "recv", p.server.get(), 4096, 2, 0);
    recv_once(obs, "recv again (MSG_DONTWAIT)", p.server.get(), 4096, 2, 4096, MSG_DONTWAIT);
}

CONFORM_SCENARIO(read_blocking_exact_nb, "read and write",
                 "non-blocking recv() after poll() with a buffer of exactly the write's size (4 KiB), then EAGAIN")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("send", send_once(p.client.get(), 12, 0, 4096));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    recv_once(obs, "recv", p.server.get(), 4096, 12, 0);
    recv_once(obs, "recv again", p.server.get(), 4096, 12, 4096);
}

CONFORM_SCENARIO(read_blocking_large, "read and write",
                 "blocking reads of a 4 MiB stream, larger than the socket buffers, then EOF")
{
    Pair p = make_pair();
    long long sent = 0;
    Watchdog dog({p.server.get()});
    std::thread writer([&] {
        sent = send_pattern(p.client.get(), 3, 0, kLarge);
        ::shutdown(p.client.get(), SHUT_WR);
    });
    read_rest(obs, "received", p.server.get(), 3, 0, kLarge);
    recv_once(obs, "then", p.server.get(), 4096, 3, kLarge);
    writer.join();
    obs.note("sent", sent);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(read_nonblock_empty, "read and write",
                 "non-blocking recv() with nothing queued: EAGAIN, and poll() says not readable")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 4);
    recv_once(obs, "recv", p.server.get(), 4096, 4, 100);
    pollfd pfd{p.server.get(), POLLIN, 0};
    obs.ret("poll", ::poll(&pfd, 1, 0));
}

CONFORM_SCENARIO(read_nonblock_small, "read and write",
                 "non-blocking recv() of a 100-byte write after poll() says readable")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("send", send_once(p.client.get(), 5, 0, 100));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    recv_once(obs, "recv", p.server.get(), 4096, 5, 0);
    recv_once(obs, "recv again", p.server.get(), 4096, 5, 100);
}

CONFORM_SCENARIO(read_nonblock_large, "read and write", "non-blocking reads with poll() of a 4 MiB stream, then EOF")
{
    Pair p = make_pair(h::nonblocking());
    long long sent = 0;
    std::thread writer([&] {
        sent = h::send_stream(p.client.get(), 6, 0, kLarge, 64 * 1024, 10000).bytes;
        ::shutdown(p.client.get(), SHUT_WR);
    });
    bool intact = false;
    const long long n = recv_pattern(p.server.get(), 6, 0, kLarge, &intact, 10000);
    writer.join();
    obs.ret("received", n);
    obs.flag("intact", intact);
    obs.note("sent", sent);
    obs.flag("readable at EOF", wait_readable(p.server.get(), 2000));
    recv_once(obs, "then", p.server.get(), 4096, 6, kLarge);
}

CONFORM_SCENARIO(write_nonblock_small, "read and write", "non-blocking send() of 100 bytes is taken whole")
{
    Pair p = make_pair(h::nonblocking());
    obs.flag("writable", wait_writable(p.client.get(), 0));
    obs.ret("send", send_once(p.client.get(), 7, 0, 100));
    read_rest(obs, "received", p.server.get(), 7, 0, 100);
}

CONFORM_SCENARIO(write_nonblock_large, "read and write",
                 "non-blocking send() of 4 MiB to a reader that has not read: a short write, every byte arrives")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 108);
    const auto b = bytes(8, 0, kLarge);
    const ssize_t r = ::send(p.client.get(), b.data(), b.size(), MSG_NOSIGNAL);
    if (r < 0) {
        obs.ret("send", r);
        return;
    }
    // How much TCP takes depends on its buffer autotuning; that it is less than 4 MiB does not.
    obs.flag("short write", static_cast<size_t>(r) < kLarge);
    bool intact = false;
    obs.flag("every byte sent arrives", recv_pattern(p.server.get(), 8, 0, static_cast<size_t>(r), &intact) == r);
    obs.flag("intact", intact);
    recv_once(obs, "then (MSG_DONTWAIT)", p.server.get(), 4096, 8, static_cast<uint64_t>(r), MSG_DONTWAIT);
    obs.flag("writable again", wait_writable(p.client.get(), 2000));
}

CONFORM_SCENARIO(write_blocking_large, "read and write",
                 "one blocking send() of 4 MiB returns 4 MiB while the peer reads")
{
    Pair p = make_pair();
    Watchdog dog({p.client.get(), p.server.get()});
    bool intact = false;
    long long n = 0;
    std::thread reader([&] { n = recv_pattern(p.server.get(), 9, 0, kLarge, &intact); });
    const auto b = bytes(9, 0, kLarge);
    obs.ret("send", ::send(p.client.get(), b.data(), b.size(), MSG_NOSIGNAL));
    reader.join();
    obs.note("received", n);
    obs.flag("intact", intact);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(write_blocking_large_nb, "read and write",
                 "non-blocking send()s of a 4 MiB buffer with poll(POLLOUT) while the peer reads: all of it arrives")
{
    Pair p = make_pair(h::nonblocking());
    h::Read got;
    std::thread reader([&] { got = h::read_stream(p.server.get(), 9, 0, kLarge, 10000); });
    const h::Sent sent = h::send_stream(p.client.get(), 9, 0, kLarge, kLarge, 10000);
    reader.join();
    h::note_sent(obs, "sent", sent);
    h::note_read(obs, "received", got);
}

// --- signals ---------------------------------------------------------------------------------------------------------

std::atomic<int> g_alarms{0};

void on_alarm(int)
{
    g_alarms.fetch_add(1, std::memory_order_relaxed);
}

// A blocking recv() in a process taking a 1 ms interval timer; the data comes after 50 ms from a thread that blocks
// the signal, so the reader is the one interrupted.
void signal_story(Obs& obs, bool restart)
{
    Pair p = make_pair();
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
    std::thread sender([&] {
        sleep_ms(50);
        send_once(p.client.get(), 10, 0, 100);
    });
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
    pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
    const itimerval every_ms{{0, 1000}, {0, 1000}};
    ::setitimer(ITIMER_REAL, &every_ms, nullptr);

    unsigned char buf[4096];
    const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, 0);
    const int e = errno;

    const itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::signal(SIGALRM, SIG_IGN); // one may still be pending
    sender.join();
    errno = e;
    obs.ret("recv", r);
    if (r > 0)
        obs.flag("recv intact", check_pattern(10, 0, buf, static_cast<size_t>(r)));
    obs.flag("signals taken", g_alarms.load() > 0);
    if (r <= 0)
        read_rest(obs, "then read", p.server.get(), 10, 0, 100);
}

// The same on non-blocking sockets: a reader that waits in poll() (which a signal always interrupts, SA_RESTART or
// not) and reads with recv() once poll() says readable. The data comes once poll() has been interrupted three times
// (2 s at most), so that the story does not depend on how soon the reader gets to poll().
void signal_story_nb(Obs& obs, bool restart)
{
    Pair p = make_pair(h::nonblocking());
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
    std::atomic<int> interruptions{0};
    std::thread sender([&] {
        for (int i = 0; i < 2000 && interruptions.load() < 3; ++i)
            sleep_ms(1);
        send_once(p.client.get(), 13, 0, 100);
    });
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
    pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
    const itimerval every_ms{{0, 1000}, {0, 1000}};
    ::setitimer(ITIMER_REAL, &every_ms, nullptr);

    unsigned char buf[4096];
    ssize_t r = -1;
    int e = 0;
    bool interrupted = false, eagain_after_pollin = false;
    h::Deadline deadline(2000);
    while (!deadline.passed()) {
        pollfd pfd{p.server.get(), POLLIN, 0};
        const int n = ::poll(&pfd, 1, deadline.left_ms());
        if (n < 0 && errno == EINTR) {
            interrupted = true;
            interruptions.fetch_add(1);
            continue;
        }
        if (n <= 0)
            break;
        r = ::recv(p.server.get(), buf, sizeof buf, 0);
        e = errno;
        if (r < 0 && (e == EAGAIN || e == EINTR)) {
            eagain_after_pollin = eagain_after_pollin || e == EAGAIN;
            continue;
        }
        break;
    }

    const itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::signal(SIGALRM, SIG_IGN); // one may still be pending
    sender.join();
    errno = e;
    obs.ret("recv", r);
    if (r > 0)
        obs.flag("recv intact", check_pattern(13, 0, buf, static_cast<size_t>(r)));
    obs.flag("signals taken", g_alarms.load() > 0);
    obs.flag("poll() interrupted", interrupted);
    obs.flag("recv() after POLLIN got EAGAIN", eagain_after_pollin);
}

CONFORM_SCENARIO(recv_signal_restart, "signals",
                 "blocking recv() taking 1 ms SA_RESTART timer signals returns the data that comes after 50 ms")
{
    signal_story(obs, true);
}

CONFORM_SCENARIO(recv_signal_norestart, "signals",
                 "blocking recv() interrupted by a timer signal without SA_RESTART: EINTR, the data stays")
{
    signal_story(obs, false);
}

CONFORM_SCENARIO(recv_signal_restart_nb, "signals",
                 "poll() + non-blocking recv() taking 1 ms SA_RESTART timer signals gets the data that comes at 50 ms")
{
    signal_story_nb(obs, true);
}

CONFORM_SCENARIO(recv_signal_norestart_nb, "signals",
                 "poll() + non-blocking recv() taking 1 ms timer signals without SA_RESTART gets the data after 50 ms")
{
    signal_story_nb(obs, false);
}

// A blocking recv() taking 1 ms SA_RESTART timer signals on `reader` while `writer` sends 100 bytes of `seed` once
// five signals came after the reader went into recv() (2 s at most; only the reader's thread takes them): what a
// blocking reader sees where sockredir let its socket into the map (the stories below).
void blocking_recv_with_signals(Obs& obs, int reader, int writer, uint32_t seed)
{
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
    std::atomic<int> reading{0}; // 0: not yet in recv(), 1: in it, 2: returned
    std::thread sender([&] {
        int i = 0;
        for (; i < 2000 && reading.load() == 0; ++i)
            sleep_ms(1);
        const int base = g_alarms.load();
        for (; i < 2000 && g_alarms.load() < base + 5 && reading.load() == 1; ++i)
            sleep_ms(1);
        h::send_stream(writer, seed, 0, 100, 100, 2000);
    });
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
    pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
    const itimerval every_ms{{0, 1000}, {0, 1000}};
    ::setitimer(ITIMER_REAL, &every_ms, nullptr);

    unsigned char buf[4096];
    reading.store(1);
    const ssize_t r = ::recv(reader, buf, sizeof buf, 0);
    const int e = errno;
    reading.store(2); // a recv() that returned early does not keep the sender waiting

    const itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::signal(SIGALRM, SIG_IGN);
    sender.join();
    errno = e;
    obs.ret("blocking recv", r);
    if (r > 0)
        obs.flag("blocking recv intact", check_pattern(seed, 0, buf, static_cast<size_t>(r)));
    obs.flag("signals taken", g_alarms.load() > 0);
    if (r <= 0)
        obs.note("then", h::read_stream(reader, seed, 0, 100, 2000).end);
}

CONFORM_SCENARIO(connect_nonblock_then_blocking, "signals",
                 "a client that connects non-blocking (for a timeout), then sends and reads blocking, taking signals")
{
    // The connect-with-a-timeout idiom (hiredis, many C clients): O_NONBLOCK for connect() and poll(), then back to
    // blocking for the request and its answer.
    PairOptions options = h::nonblocking();
    options.warm_up = false;
    Pair p = make_pair(options);
    set_nonblock(p.client.get(), false);
    obs.ret("request", send_once(p.client.get(), 14, 0, 100));
    h::note_read(obs, "server reads the request", h::read_stream(p.server.get(), 14, 0, 100, 2000));
    blocking_recv_with_signals(obs, p.client.get(), p.server.get(), 15);
}

CONFORM_SCENARIO(blocking_server_first_recv, "signals",
                 "a blocking server's first recv(), before the client's request, taking timer signals")
{
    // A thread-per-connection server: accept() without SOCK_NONBLOCK and a blocking recv() for the request; its
    // client is an event-driven one.
    PairOptions options;
    options.client_nonblock = true;
    options.warm_up = false;
    Pair p = make_pair(options);
    blocking_recv_with_signals(obs, p.server.get(), p.client.get(), 16);
}

CONFORM_SCENARIO(blocking_after_redirect, "signals",
                 "a reader that turns blocking after non-blocking exchanges: blocking recv()s taking timer signals")
{
    // An event loop that hands a connection to a blocking worker thread after the first exchange.
    Pair p = make_pair(h::nonblocking());
    h::exchange(obs, p.client.get(), p.server.get(), 17);
    set_nonblock(p.server.get(), false);
    obs.ret("second request", send_once(p.client.get(), 19, 0, 100));
    read_rest(obs, "blocking read of the second request", p.server.get(), 19, 0, 100);
    blocking_recv_with_signals(obs, p.server.get(), p.client.get(), 20);
}

// --- threads sharing a socket ----------------------------------------------------------------------------------------

CONFORM_SCENARIO(two_readers, "threads",
                 "two threads blocked in recv() on one socket share the stream, no error, both see EOF")
{
    Pair p = make_pair();
    constexpr size_t kChunk = 1024, kChunks = 64;
    std::mutex mutex;
    std::array<uint64_t, 256> histogram{};
    uint64_t total = 0;
    std::set<std::string> errors;
    int eofs = 0;
    auto reader = [&] {
        unsigned char buf[kChunk];
        for (int failures = 0; failures < 1000;) {
            const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, 0);
            const int e = errno;
            std::lock_guard lock(mutex);
            if (r > 0) {
                for (ssize_t i = 0; i < r; ++i)
                    ++histogram[buf[i]];
                total += static_cast<uint64_t>(r);
            } else if (r == 0) {
                ++eofs;
                return;
            } else if (e != EINTR) {
                errors.insert(errno_name(e));
                ++failures;
            }
        }
    };
    Watchdog dog({p.server.get()});
    {
        std::thread a(reader), b(reader);
        sleep_ms(20); // both readers are blocked before the first byte
        for (size_t i = 0; i < kChunks; ++i) {
            send_once(p.client.get(), 11, i * kChunk, kChunk);
            sleep_ms(1);
        }
        ::shutdown(p.client.get(), SHUT_WR);
        a.join();
        b.join();
    }
    // Which reader got which bytes depends on the scheduler; the bytes as a whole do not.
    std::array<uint64_t, 256> expect{};
    for (const unsigned char c : bytes(11, 0, kChunk * kChunks))
        ++expect[c];
    obs.note("received", static_cast<long long>(total));
    obs.flag("every byte once", histogram == expect);
    std::string names;
    for (const auto& e : errors)
        names += (names.empty() ? "" : " ") + e;
    obs.note("reader errors", names.empty() ? "none" : names);
    obs.note("readers that saw EOF", eofs);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(two_readers_nb, "threads",
                 "two threads reading one non-blocking socket with poll() + recv() share the stream, both see EOF")
{
    Pair p = make_pair(h::nonblocking());
    constexpr size_t kChunk = 1024, kChunks = 64;
    std::mutex mutex;
    std::array<uint64_t, 256> histogram{};
    uint64_t total = 0;
    std::set<std::string> errors;
    int eofs = 0;
    auto reader = [&] {
        unsigned char buf[kChunk];
        h::Deadline deadline(4000);
        while (!deadline.passed()) {
            pollfd pfd{p.server.get(), POLLIN, 0};
            if (::poll(&pfd, 1, std::min(deadline.left_ms(), 100)) <= 0)
                continue;
            const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, 0);
            const int e = errno;
            std::lock_guard lock(mutex);
            if (r > 0) {
                for (ssize_t i = 0; i < r; ++i)
                    ++histogram[buf[i]];
                total += static_cast<uint64_t>(r);
            } else if (r == 0) {
                ++eofs;
                return;
            } else if (e != EINTR && e != EAGAIN) {
                // EAGAIN is what a non-blocking reader gets when the other one took the bytes: not an error.
                errors.insert(errno_name(e));
            }
        }
    };
    {
        std::thread a(reader), b(reader);
        sleep_ms(20); // both readers wait in poll() before the first byte
        for (size_t i = 0; i < kChunks; ++i) {
            h::send_stream(p.client.get(), 11, i * kChunk, kChunk, kChunk, 2000);
            sleep_ms(1);
        }
        ::shutdown(p.client.get(), SHUT_WR);
        a.join();
        b.join();
    }
    std::array<uint64_t, 256> expect{};
    for (const unsigned char c : bytes(11, 0, kChunk * kChunks))
        ++expect[c];
    obs.note("received", static_cast<long long>(total));
    obs.flag("every byte once", histogram == expect);
    std::string names;
    for (const auto& e : errors)
        names += (names.empty() ? "" : " ") + e;
    obs.note("reader errors", names.empty() ? "none" : names);
    obs.note("readers that saw EOF", eofs);
}

CONFORM_SCENARIO(two_writers, "threads",
                 "two threads send() 512-byte frames on one socket: each frame whole, each writer's frames in order")
{
    Pair p = make_pair();
    constexpr size_t kFrame = 512, kFrames = 128, kHeader = 8;
    // 128 KiB in all: less than the sender's buffer, so no send() waits for memory, and TCP keeps each one whole.
    std::latch start(2);
    std::array<std::string, 2> outcome;
    auto writer = [&](uint32_t id) {
        start.arrive_and_wait();
        for (uint32_t seq = 0; seq < kFrames; ++seq) {
            unsigned char frame[kFrame];
            std::memcpy(frame, &id, 4);
            std::memcpy(frame + 4, &seq, 4);
            pattern(20 + id, uint64_t{seq} * (kFrame - kHeader), frame + kHeader, kFrame - kHeader);
            const ssize_t w = ::send(p.client.get(), frame, kFrame, MSG_NOSIGNAL);
            if (w != static_cast<ssize_t>(kFrame)) {
                outcome[id] = w < 0 ? errno_name(errno) : "short write " + std::to_string(w);
                return;
            }
        }
        outcome[id] = "ok";
    };
    Watchdog dog({p.server.get()});
    std::thread a(writer, 0), b(writer, 1);
    std::vector<unsigned char> all(2 * kFrames * kFrame);
    bool intact = false;
    size_t got = 0;
    while (got < all.size()) {
        const ssize_t r = ::recv(p.server.get(), all.data() + got, all.size() - got, 0);
        if (r <= 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += static_cast<size_t>(r);
    }
    a.join();
    b.join();
    std::array<uint32_t, 2> next{};
    intact = got == all.size();
    for (size_t off = 0; intact && off < got; off += kFrame) {
        uint32_t id, seq;
        std::memcpy(&id, &all[off], 4);
        std::memcpy(&seq, &all[off + 4], 4);
        intact = id < 2 && seq == next[id] &&
                 check_pattern(20 + id, uint64_t{seq} * (kFrame - kHeader), &all[off + kHeader], kFrame - kHeader);
        if (intact)
            ++next[id];
    }
    obs.note("writers", outcome[0] + " " + outcome[1]);
    obs.note("received", static_cast<long long>(got));
    obs.flag("frames whole and in order per writer", intact);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(two_writers_nb, "threads",
                 "two threads send() 512-byte frames on one non-blocking socket with poll(POLLOUT): each frame whole")
{
    Pair p = make_pair(h::nonblocking());
    constexpr size_t kFrame = 512, kFrames = 128, kHeader = 8;
    // 128 KiB in all, read as it comes: no send() finds the buffer full, so each frame goes in one call (a short
    // write, which would split a frame, is recorded as such).
    std::latch start(2);
    std::array<std::string, 2> outcome;
    auto writer = [&](uint32_t id) {
        start.arrive_and_wait();
        for (uint32_t seq = 0; seq < kFrames; ++seq) {
            unsigned char frame[kFrame];
            std::memcpy(frame, &id, 4);
            std::memcpy(frame + 4, &seq, 4);
            pattern(20 + id, uint64_t{seq} * (kFrame - kHeader), frame + kHeader, kFrame - kHeader);
            ssize_t w;
            for (int tries = 0;; ++tries) {
                w = ::send(p.client.get(), frame, kFrame, MSG_NOSIGNAL);
                if (w >= 0 || (errno != EAGAIN && errno != EINTR) || tries == 1000)
                    break;
                wait_writable(p.client.get(), 100);
            }
            if (w != static_cast<ssize_t>(kFrame)) {
                outcome[id] = w < 0 ? errno_name(errno) : "short write " + std::to_string(w);
                return;
            }
        }
        outcome[id] = "ok";
    };
    std::thread a(writer, 0), b(writer, 1);
    std::vector<unsigned char> all(2 * kFrames * kFrame);
    size_t got = 0;
    h::Deadline deadline(4000);
    while (got < all.size() && !deadline.passed()) {
        if (!wait_readable(p.server.get(), std::min(deadline.left_ms(), 100)))
            continue;
        const ssize_t r = ::recv(p.server.get(), all.data() + got, all.size() - got, 0);
        if (r > 0)
            got += static_cast<size_t>(r);
        else if (r == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    a.join();
    b.join();
    std::array<uint32_t, 2> next{};
    bool intact = got == all.size();
    for (size_t off = 0; intact && off < got; off += kFrame) {
        uint32_t id, seq;
        std::memcpy(&id, &all[off], 4);
        std::memcpy(&seq, &all[off + 4], 4);
        intact = id < 2 && seq == next[id] &&
                 check_pattern(20 + id, uint64_t{seq} * (kFrame - kHeader), &all[off + kHeader], kFrame - kHeader);
        if (intact)
            ++next[id];
    }
    obs.note("writers", outcome[0] + " " + outcome[1]);
    obs.note("received", static_cast<long long>(got));
    obs.flag("frames whole and in order per writer", intact);
}

CONFORM_SCENARIO(recv_while_shutdown_wr, "threads",
                 "a thread blocked in recv() while another sends and does shutdown(SHUT_WR) on the same socket")
{
    Pair p = make_pair();
    Watchdog dog({p.client.get(), p.server.get()});
    std::string first;
    long long reply = 0;
    bool reply_intact = true, eof = false;
    std::thread reader([&] {
        unsigned char buf[4096];
        for (int calls = 0; calls < 1000; ++calls) {
            const ssize_t r = ::recv(p.client.get(), buf, sizeof buf, 0);
            const int e = errno;
            if (calls == 0)
                first = r >= 0 ? std::to_string(r) : errno_name(e);
            if (r > 0) {
                reply_intact =
                    reply_intact && check_pattern(31, static_cast<uint64_t>(reply), buf, static_cast<size_t>(r));
                reply += r;
            } else if (r == 0) {
                eof = true;
                return;
            }
            // Later errors are not recorded: whether a redirected reader is woken again without data (the
            // peer's FIN, its ACK) depends on timing; the first call is the story.
        }
    });
    bool request_intact = false;
    long long request = 0, server_eof = -2;
    std::thread server([&] {
        request = recv_pattern(p.server.get(), 30, 0, 100, &request_intact);
        unsigned char buf[16];
        server_eof = ::recv(p.server.get(), buf, sizeof buf, 0);
        sleep_ms(30); // the client's FIN is acknowledged before the answer comes
        send_once(p.server.get(), 31, 0, 200);
        ::shutdown(p.server.get(), SHUT_WR);
    });
    sleep_ms(20); // the reader is blocked before the request goes out
    obs.ret("request", send_once(p.client.get(), 30, 0, 100));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(p.client.get(), SHUT_WR));
    server.join();
    reader.join();
    obs.note("server read", request);
    obs.flag("request intact", request_intact);
    obs.note("server recv after the request", server_eof);
    obs.note("first recv", first);
    obs.note("reply bytes", reply);
    obs.flag("reply intact", reply_intact);
    obs.flag("eof", eof);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(recv_while_shutdown_wr_nb, "threads",
                 "a thread in poll() + recv() while another sends and does shutdown(SHUT_WR) on the same socket")
{
    Pair p = make_pair(h::nonblocking());
    std::string first;
    long long reply = 0;
    bool reply_intact = true, eof = false;
    std::set<std::string> errors;
    std::thread reader([&] {
        unsigned char buf[4096];
        h::Deadline deadline(4000);
        while (!deadline.passed()) {
            if (!wait_readable(p.client.get(), std::min(deadline.left_ms(), 100)))
                continue;
            const ssize_t r = ::recv(p.client.get(), buf, sizeof buf, 0);
            const int e = errno;
            // A single reader never gets EAGAIN after POLLIN on TCP: recorded if it does.
            if (first.empty())
                first = r >= 0 ? std::to_string(r) : errno_name(e);
            if (r > 0) {
                reply_intact =
                    reply_intact && check_pattern(31, static_cast<uint64_t>(reply), buf, static_cast<size_t>(r));
                reply += r;
            } else if (r == 0) {
                eof = true;
                return;
            } else if (e != EAGAIN && e != EINTR) {
                errors.insert(errno_name(e));
            }
        }
    });
    bool request_intact = false;
    long long request = 0, server_eof = -2;
    std::thread server([&] {
        const h::Read req = h::read_stream(p.server.get(), 30, 0, 100, 2000);
        request = req.bytes;
        request_intact = req.intact;
        unsigned char buf[16];
        wait_readable(p.server.get(), 2000); // the FIN
        server_eof = ::recv(p.server.get(), buf, sizeof buf, 0);
        sleep_ms(30); // the client's FIN is acknowledged before the answer comes
        h::send_stream(p.server.get(), 31, 0, 200, 200, 2000);
        ::shutdown(p.server.get(), SHUT_WR);
    });
    sleep_ms(20); // the reader waits in poll() before the request goes out
    obs.ret("request", send_once(p.client.get(), 30, 0, 100));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(p.client.get(), SHUT_WR));
    server.join();
    reader.join();
    obs.note("server read", request);
    obs.flag("request intact", request_intact);
    obs.note("server recv after the request", server_eof);
    obs.note("first recv after POLLIN", first);
    obs.note("reply bytes", reply);
    obs.flag("reply intact", reply_intact);
    obs.flag("eof", eof);
    std::string names;
    for (const auto& e : errors)
        names += (names.empty() ? "" : " ") + e;
    obs.note("reader errors", names.empty() ? "none" : names);
}

// --- shutdown and close ----------------------------------------------------------------------------------------------

CONFORM_SCENARIO(shutdown_rd_recv, "shutdown and close",
                 "shutdown(SHUT_RD) then recv(): EOF at once; what recv() sees of data the peer sends later")
{
    Pair p = make_pair();
    warm_up(obs, p, 40);
    obs.ret("shutdown(SHUT_RD)", ::shutdown(p.server.get(), SHUT_RD));
    Watchdog dog({p.server.get()});
    recv_once(obs, "recv", p.server.get(), 4096, 40, 100);
    pollfd pfd{p.server.get(), POLLIN | POLLRDHUP, 0};
    obs.ret("poll", ::poll(&pfd, 1, 0));
    obs.flag("POLLIN", pfd.revents & POLLIN);
    obs.flag("POLLRDHUP", pfd.revents & POLLRDHUP);
    obs.ret("peer sends", send_once(p.client.get(), 40, 100, 100));
    sleep_ms(20);
    recv_once(obs, "recv after the peer sent", p.server.get(), 4096, 40, 100, MSG_DONTWAIT);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(shutdown_rd_recv_nb, "shutdown and close",
                 "non-blocking: shutdown(SHUT_RD) then recv(): EOF at once; what recv() sees of data sent later")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 41);
    obs.ret("shutdown(SHUT_RD)", ::shutdown(p.server.get(), SHUT_RD));
    recv_once(obs, "recv", p.server.get(), 4096, 41, 100);
    pollfd pfd{p.server.get(), POLLIN | POLLRDHUP, 0};
    obs.ret("poll", ::poll(&pfd, 1, 0));
    obs.flag("POLLIN", pfd.revents & POLLIN);
    obs.flag("POLLRDHUP", pfd.revents & POLLRDHUP);
    obs.ret("peer sends", send_once(p.client.get(), 41, 100, 100));
    sleep_ms(20);
    recv_once(obs, "recv after the peer sent", p.server.get(), 4096, 41, 100);
    obs.note("then", h::poll_once(p.server.get(), POLLIN | POLLRDHUP, 0));
    recv_once(obs, "recv again", p.server.get(), 4096, 41, 200);
}

// One side sends 64 KiB and half-closes; the other reads all of it and EOF, then answers 64 KiB the other way.
void half_close_story(Obs& obs, bool client_first)
{
    Pair p = make_pair();
    const int a = client_first ? p.client.get() : p.server.get();
    const int b = client_first ? p.server.get() : p.client.get();
    constexpr size_t kBytes = 64 * 1024;
    Watchdog dog({a, b});
    obs.ret("send", send_pattern(a, 50, 0, kBytes));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(a, SHUT_WR));
    read_rest(obs, "peer reads", b, 50, 0, kBytes);
    recv_once(obs, "peer reads then", b, 4096, 50, kBytes);
    obs.ret("peer answers", send_pattern(b, 51, 0, kBytes));
    read_rest(obs, "answer", a, 51, 0, kBytes);
    obs.ret("peer close", ::shutdown(b, SHUT_WR));
    recv_once(obs, "then", a, 4096, 51, kBytes);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(half_close_client, "shutdown and close",
                 "client half-closes after 64 KiB: the server reads all then EOF, and its answer still arrives")
{
    half_close_story(obs, true);
}

CONFORM_SCENARIO(half_close_server, "shutdown and close",
                 "server half-closes after 64 KiB: the client reads all then EOF, and its answer still arrives")
{
    half_close_story(obs, false);
}

// The same on non-blocking sockets: every write through poll(POLLOUT), every read through poll(POLLIN).
void half_close_story_nb(Obs& obs, bool client_first)
{
    Pair p = make_pair(h::nonblocking());
    const int a = client_first ? p.client.get() : p.server.get();
    const int b = client_first ? p.server.get() : p.client.get();
    constexpr size_t kBytes = 64 * 1024;
    h::note_sent(obs, "send", h::send_stream(a, 52, 0, kBytes, 16 * 1024, 4000));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(a, SHUT_WR));
    h::note_read(obs, "peer reads to EOF", h::read_stream(b, 52, 0, kBytes, 4000, true));
    obs.note("peer then sees", h::poll_once(b, POLLIN | POLLOUT | POLLRDHUP, 0));
    h::note_sent(obs, "peer answers", h::send_stream(b, 53, 0, kBytes, 16 * 1024, 4000));
    h::note_read(obs, "answer", h::read_stream(a, 53, 0, kBytes, 4000));
    obs.ret("peer close", ::shutdown(b, SHUT_WR));
    h::note_read(obs, "then", h::read_stream(a, 53, kBytes, 0, 2000, true));
    obs.note("both shut", h::poll_once(a, POLLIN | POLLOUT | POLLRDHUP, 0));
}

CONFORM_SCENARIO(half_close_client_nb, "shutdown and close",
                 "non-blocking: client half-closes after 64 KiB, the server reads to EOF, its answer still arrives")
{
    half_close_story_nb(obs, true);
}

CONFORM_SCENARIO(half_close_server_nb, "shutdown and close",
                 "non-blocking: server half-closes after 64 KiB, the client reads to EOF, its answer still arrives")
{
    half_close_story_nb(obs, false);
}

CONFORM_SCENARIO(blocked_recv_peer_fin, "shutdown and close",
                 "a recv() blocked when the peer half-closes returns 0; the other direction still works")
{
    Pair p = make_pair();
    warm_up(obs, p, 60);
    Watchdog dog({p.server.get()});
    std::thread closer([&] {
        sleep_ms(30);
        ::shutdown(p.client.get(), SHUT_WR);
    });
    recv_once(obs, "recv", p.server.get(), 4096, 60, 100);
    closer.join();
    obs.ret("send back", send_once(p.server.get(), 61, 0, 100));
    read_rest(obs, "client reads", p.client.get(), 61, 0, 100);
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(blocked_recv_peer_fin_nb, "shutdown and close",
                 "a reader in poll() when the peer half-closes: POLLIN|POLLRDHUP, recv() 0; the other way still works")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 62);
    std::thread closer([&] {
        sleep_ms(30);
        ::shutdown(p.client.get(), SHUT_WR);
    });
    obs.note("poll", h::poll_once(p.server.get(), POLLIN | POLLRDHUP, 2000));
    recv_once(obs, "recv", p.server.get(), 4096, 62, 100);
    closer.join();
    obs.ret("send back", send_once(p.server.get(), 63, 0, 100));
    read_rest(obs, "client reads", p.client.get(), 63, 0, 100);
    obs.note("client then", h::poll_once(p.client.get(), POLLIN | POLLOUT | POLLRDHUP, 0));
}

CONFORM_SCENARIO(close_unread, "shutdown and close",
                 "close() with unread data resets the connection: the peer's recv() gets ECONNRESET")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("send", send_once(p.client.get(), 70, 0, 100));
    obs.flag("server readable", wait_readable(p.server.get(), 2000));
    p.server.close();
    obs.flag("client readable", wait_readable(p.client.get(), 2000));
    obs.note("client poll", h::poll_once(p.client.get(), POLLIN | POLLOUT | POLLRDHUP, 0));
    recv_once(obs, "client recv", p.client.get(), 4096, 0, 0, MSG_DONTWAIT);
    recv_once(obs, "client recv again", p.client.get(), 4096, 0, 0, MSG_DONTWAIT);
}

CONFORM_SCENARIO(linger_zero_close, "shutdown and close",
                 "close() with SO_LINGER 0 resets the connection: ECONNRESET, then EPIPE on send")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 71);
    const linger l{1, 0};
    obs.ret("SO_LINGER", ::setsockopt(p.server.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l));
    p.server.close();
    obs.flag("client readable", wait_readable(p.client.get(), 2000));
    obs.note("client poll", h::poll_once(p.client.get(), POLLIN | POLLOUT | POLLRDHUP, 0));
    recv_once(obs, "client recv", p.client.get(), 4096, 0, 0, MSG_DONTWAIT);
    obs.ret("client send", send_once(p.client.get(), 72, 0, 100));
}

CONFORM_SCENARIO(send_after_peer_close, "shutdown and close",
                 "send() to a peer that closed: the first is taken, the reset comes back, the next gets EPIPE")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 73);
    p.server.close();
    obs.flag("client readable", wait_readable(p.client.get(), 2000));
    recv_once(obs, "client recv", p.client.get(), 4096, 0, 0, MSG_DONTWAIT);
    obs.ret("first send", send_once(p.client.get(), 74, 0, 100));
    // The reset shows as POLLERR (poll() reports it whatever was asked).
    bool reset = false;
    for (int i = 0; i < 200 && !reset; ++i) {
        pollfd pfd{p.client.get(), 0, 0};
        reset = ::poll(&pfd, 1, 10) > 0 && (pfd.revents & POLLERR);
    }
    obs.flag("reset seen", reset);
    obs.ret("second send", send_once(p.client.get(), 74, 100, 100));
}

// --- receive flags ---------------------------------------------------------------------------------------------------

CONFORM_SCENARIO(waitall_pieces, "receive flags",
                 "blocking recv(MSG_WAITALL) of 4000 bytes sent as four 1000-byte pieces 10 ms apart")
{
    Pair p = make_pair();
    Watchdog dog({p.server.get()});
    std::thread sender([&] {
        for (int i = 0; i < 4; ++i) {
            sleep_ms(10);
            send_once(p.client.get(), 80, i * 1000, 1000);
        }
    });
    const long long r = recv_once(obs, "recv", p.server.get(), 4000, 80, 0, MSG_WAITALL);
    sender.join();
    if (r >= 0 && r < 4000)
        read_rest(obs, "rest", p.server.get(), 80, static_cast<uint64_t>(r), 4000 - static_cast<size_t>(r));
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(waitall_pieces_nb, "receive flags",
                 "recv(MSG_WAITALL | MSG_DONTWAIT) of 4000 bytes returns what is queued: a piece, EAGAIN, the rest")
{
    Pair p = make_pair(h::nonblocking());
    constexpr int kFlags = MSG_WAITALL | MSG_DONTWAIT;
    obs.ret("send 1000", send_once(p.client.get(), 84, 0, 1000));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    recv_once(obs, "recv with 1000 queued", p.server.get(), 4000, 84, 0, kFlags);
    recv_once(obs, "recv with nothing queued", p.server.get(), 4000, 84, 1000, kFlags);
    for (int i = 1; i < 4; ++i)
        obs.ret("send 1000 more", send_once(p.client.get(), 84, i * 1000, 1000));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(p.client.get(), SHUT_WR));
    // The FIN comes after the data: once it is seen, all three pieces are there.
    obs.note("reader sees the end", h::poll_once(p.server.get(), POLLRDHUP, 2000));
    recv_once(obs, "recv with 3000 and the FIN queued", p.server.get(), 4000, 84, 1000, kFlags);
    recv_once(obs, "recv at EOF", p.server.get(), 4000, 84, 4000, kFlags);
}

CONFORM_SCENARIO(peek_then_read, "receive flags", "recv(MSG_PEEK) then recv() return the same 300 bytes")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("send", send_once(p.client.get(), 81, 0, 300));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    recv_once(obs, "peek", p.server.get(), 4096, 81, 0, MSG_PEEK | MSG_DONTWAIT);
    recv_once(obs, "read", p.server.get(), 4096, 81, 0, MSG_DONTWAIT);
    recv_once(obs, "then", p.server.get(), 4096, 81, 300, MSG_DONTWAIT);
}

CONFORM_SCENARIO(peek_off, "receive flags",
                 "SO_PEEK_OFF: two 100-byte peeks see bytes 0-99 then 100-199; a read then takes all 300")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("SO_PEEK_OFF", [&] {
        const int zero = 0;
        return ::setsockopt(p.server.get(), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
    }());
    obs.ret("send", send_once(p.client.get(), 82, 0, 300));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    recv_once(obs, "first peek", p.server.get(), 100, 82, 0, MSG_PEEK | MSG_DONTWAIT);
    unsigned char buf[100];
    const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    obs.ret("second peek", r);
    if (r > 0) {
        const auto n = static_cast<size_t>(r);
        obs.note("second peek starts at", check_pattern(82, 100, buf, n) ? "100"
                                          : check_pattern(82, 0, buf, n) ? "0"
                                                                         : "?");
    }
    recv_once(obs, "read", p.server.get(), 4096, 82, 0, MSG_DONTWAIT);
}

CONFORM_SCENARIO(msg_trunc, "receive flags",
                 "recv(NULL, 100, MSG_TRUNC) discards 100 bytes; the next read starts at byte 100")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("send", send_once(p.client.get(), 83, 0, 300));
    obs.flag("readable", wait_readable(p.server.get(), 2000));
    obs.ret("recv MSG_TRUNC", ::recv(p.server.get(), nullptr, 100, MSG_TRUNC | MSG_DONTWAIT));
    unsigned char buf[4096];
    const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, MSG_DONTWAIT);
    obs.ret("read", r);
    if (r > 0) {
        const auto n = static_cast<size_t>(r);
        obs.note("read starts at", check_pattern(83, 100, buf, n) ? "100" : check_pattern(83, 0, buf, n) ? "0" : "?");
    }
}

// --- receive and send options ----------------------------------------------------------------------------------------

CONFORM_SCENARIO(rcvlowat_blocking, "socket options",
                 "SO_RCVLOWAT 1000: a blocking recv() returns only once 1000 bytes are there (sent as 500 + 500)")
{
    Pair p = make_pair();
    obs.ret("SO_RCVLOWAT", [&] {
        const int lowat = 1000;
        return ::setsockopt(p.server.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    }());
    Watchdog dog({p.server.get()});
    std::thread sender([&] {
        // The reader must be blocked before the first piece: a reader that copied 500 bytes already is woken only
        // when 1000 more are there (tcp_data_ready compares what is unread with the whole SO_RCVLOWAT).
        sleep_ms(20);
        send_once(p.client.get(), 90, 0, 500);
        sleep_ms(30);
        send_once(p.client.get(), 90, 500, 500);
    });
    const long long r = recv_once(obs, "recv", p.server.get(), 4096, 90, 0);
    sender.join();
    if (r >= 0 && r < 1000)
        read_rest(obs, "rest", p.server.get(), 90, static_cast<uint64_t>(r), 1000 - static_cast<size_t>(r));
    obs.flag("watchdog fired", dog.stop());
}

CONFORM_SCENARIO(rcvlowat_blocking_nb, "socket options",
                 "SO_RCVLOWAT 1000, non-blocking: poll() waits for 1000 bytes (sent as 500 + 500), recv() takes them")
{
    // An event loop that sets the low-water mark to the size of the message it waits for (here after the first
    // exchange), lets poll() say when it is complete and reads it whole.
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 94);
    obs.ret("SO_RCVLOWAT", [&] {
        const int lowat = 1000;
        return ::setsockopt(p.server.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    }());
    std::thread sender([&] {
        sleep_ms(20);
        send_once(p.client.get(), 90, 0, 500);
        sleep_ms(30);
        send_once(p.client.get(), 90, 500, 500);
    });
    // poll() returns once the second piece is there (the first one alone does not make it readable).
    const auto start = std::chrono::steady_clock::now();
    const bool readable = wait_readable(p.server.get(), 2000);
    const auto waited = std::chrono::steady_clock::now() - start;
    sender.join();
    obs.flag("readable", readable);
    obs.flag("poll() waited for the second piece", waited >= std::chrono::milliseconds(40));
    const long long r = recv_once(obs, "recv", p.server.get(), 4096, 90, 0);
    if (r >= 0 && r < 1000)
        read_rest(obs, "rest", p.server.get(), 90, static_cast<uint64_t>(r), 1000 - static_cast<size_t>(r));
    // A non-blocking recv() does not wait for the mark: what is queued comes at once.
    obs.ret("send 300", send_once(p.client.get(), 90, 1000, 300));
    sleep_ms(20);
    recv_once(obs, "recv with 300 queued", p.server.get(), 4096, 90, 1000);
}

CONFORM_SCENARIO(rcvlowat_poll, "socket options",
                 "SO_RCVLOWAT 1000: poll() says not readable with 500 bytes queued, readable with 1000")
{
    Pair p = make_pair(h::nonblocking());
    obs.ret("SO_RCVLOWAT", [&] {
        const int lowat = 1000;
        return ::setsockopt(p.server.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    }());
    obs.ret("send 500", send_once(p.client.get(), 91, 0, 500));
    sleep_ms(20);
    obs.flag("readable at 500", wait_readable(p.server.get(), 0));
    obs.ret("send 500 more", send_once(p.client.get(), 91, 500, 500));
    obs.flag("readable at 1000", wait_readable(p.server.get(), 2000));
    recv_once(obs, "recv", p.server.get(), 4096, 91, 0, MSG_DONTWAIT);
}

CONFORM_SCENARIO(rcvtimeo_empty, "socket options",
                 "SO_RCVTIMEO 100 ms on an idle connection: recv() waits the timeout, then EAGAIN")
{
    Pair p = make_pair();
    warm_up(obs, p, 92);
    set_timeout(p.server.get(), SO_RCVTIMEO, 100);
    unsigned char buf[4096];
    const auto start = std::chrono::steady_clock::now();
    const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, 0);
    const auto waited = std::chrono::steady_clock::now() - start;
    obs.ret("recv", r);
    // The kernel rounds the timeout to jiffies; 80 ms leaves room for that and for a slow clock, not for a wake-up
    // that returns early.
    obs.flag("waited the timeout", waited >= std::chrono::milliseconds(80));
    obs.flag("returned within 2 s", waited < std::chrono::seconds(2));
}

CONFORM_SCENARIO(rcvtimeo_empty_nb, "socket options",
                 "SO_RCVTIMEO 100 ms on an idle non-blocking socket: recv() EAGAIN at once, poll(100 ms) times out")
{
    Pair p = make_pair(h::nonblocking());
    warm_up(obs, p, 95);
    set_timeout(p.server.get(), SO_RCVTIMEO, 100);
    unsigned char buf[4096];
    const auto start = std::chrono::steady_clock::now();
    const ssize_t r = ::recv(p.server.get(), buf, sizeof buf, 0);
    const auto waited = std::chrono::steady_clock::now() - start;
    obs.ret("recv", r);
    obs.flag("returned at once (within 50 ms)", waited < std::chrono::milliseconds(50));
    obs.note("poll(100 ms)", h::poll_once(p.server.get(), POLLIN, 100));
    obs.ret("send", send_once(p.client.get(), 95, 100, 100));
    obs.note("poll after data", h::poll_once(p.server.get(), POLLIN, 2000));
    recv_once(obs, "recv after data", p.server.get(), 4096, 95, 100);
}

CONFORM_SCENARIO(sndtimeo_full, "socket options",
                 "SO_SNDTIMEO 200 ms, reader not reading: send() stops with a short write or EAGAIN before 16 MiB")
{
    Pair p = make_pair();
    set_timeout(p.client.get(), SO_SNDTIMEO, 200);
    constexpr size_t kChunk = 64 * 1024, kBound = 16 * 1024 * 1024;
    std::vector<unsigned char> chunk(kChunk);
    size_t sent = 0;
    std::string stop = "no (16 MiB taken)";
    while (sent < kBound) {
        pattern(93, sent, chunk.data(), kChunk);
        const ssize_t w = ::send(p.client.get(), chunk.data(), kChunk, MSG_NOSIGNAL);
        if (w == static_cast<ssize_t>(kChunk)) {
            sent += kChunk;
            continue;
        }
        // Whether the call that runs out copied a part first depends on timing: both are "held back".
        if (w >= 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            stop = "yes (short write or EAGAIN)";
        else
            stop = errno_name(errno);
        if (w > 0)
            sent += static_cast<size_t>(w);
        break;
    }
    obs.note("held back", stop);
    bool intact = false;
    obs.flag("every byte sent arrives",
             recv_pattern(p.server.get(), 93, 0, sent, &intact) == static_cast<long long>(sent));
    obs.flag("intact", intact);
}

} // namespace
