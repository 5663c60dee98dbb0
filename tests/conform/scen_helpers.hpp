// Helpers shared by the second half of the scenarios (scen_flow, scen_ioctl, scen_poll, scen_splice, scen_oob,
// scen_info, scen_setup, scen_io): reads bounded by a deadline whatever the socket's mode, readiness masks as names,
// and a thread that is always joined.
#pragma once

#include "tests/conform/scenario.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace conform::helpers {

inline constexpr size_t kKiB = 1024;
inline constexpr size_t kMiB = 1024 * 1024;

// Milliseconds left until a deadline, for poll(); 0 once it has passed.
class Deadline {
public:
    explicit Deadline(int timeout_ms) : end_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms))
    {
    }
    int left_ms() const
    {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - std::chrono::steady_clock::now());
        return left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
    bool passed() const { return std::chrono::steady_clock::now() >= end_; }

private:
    std::chrono::steady_clock::time_point end_;
};

// What a bounded read saw: how many bytes, whether they were the pattern, and how it ended: "complete" (len bytes),
// "eof", "timeout" or the errno name of the error that stopped it.
struct Read {
    long long bytes = 0;
    bool intact = true;
    std::string end;
};

// Reads the pattern [offset, offset + len) from fd with poll() and MSG_DONTWAIT, so it never blocks whatever the
// socket's mode, until len bytes arrived or timeout_ms passed. With expect_eof it goes on until EOF and counts any
// byte past len as damage. EINTR and a spurious EAGAIN are retried: only what the stream delivers is judged here.
inline Read read_stream(int fd, uint32_t seed, uint64_t offset, size_t len, int timeout_ms, bool expect_eof = false)
{
    Read r;
    Deadline deadline(timeout_ms);
    std::vector<unsigned char> buf(256 * kKiB);
    for (;;) {
        if (!expect_eof && static_cast<size_t>(r.bytes) >= len) {
            r.end = "complete";
            return r;
        }
        // Never past len unless asked for EOF: the caller may read the rest of the stream itself.
        size_t want = buf.size();
        if (!expect_eof) {
            want = std::min(want, len - static_cast<size_t>(r.bytes));
        }
        ssize_t n = ::recv(fd, buf.data(), want, MSG_DONTWAIT);
        if (n > 0) {
            size_t good = 0;
            if (static_cast<size_t>(r.bytes) < len) {
                good = std::min(static_cast<size_t>(n), len - static_cast<size_t>(r.bytes));
                if (!check_pattern(seed, offset + static_cast<uint64_t>(r.bytes), buf.data(), good)) {
                    r.intact = false;
                }
            }
            if (good < static_cast<size_t>(n)) {
                r.intact = false; // bytes past the end of the stream
            }
            r.bytes += n;
            continue;
        }
        if (n == 0) {
            r.end = "eof";
            return r;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            r.end = errno_name(errno);
            return r;
        }
        if (deadline.passed()) {
            r.end = "timeout";
            return r;
        }
        pollfd p{fd, POLLIN, 0};
        // Level-triggered readiness may say "readable" while recv() finds nothing (a stream that cannot be read this
        // way); a short sleep keeps that from spinning a core until the deadline.
        if (::poll(&p, 1, std::min(deadline.left_ms(), 100)) > 0) {
            sleep_ms(1);
        }
    }
}

// Records a Read under a prefix: "<what> bytes", "<what> intact", "<what> end".
inline void note_read(Obs& obs, const std::string& what, const Read& r)
{
    obs.note(what + " bytes", r.bytes);
    obs.flag(what + " intact", r.intact);
    obs.note(what + " end", r.end);
}

// The poll bits an application acts on, as names ("IN|OUT|RDHUP"; "none").
inline std::string poll_names(unsigned events)
{
    static const std::pair<unsigned, const char*> names[] = {
        {POLLIN, "IN"}, {POLLPRI, "PRI"}, {POLLOUT, "OUT"}, {POLLERR, "ERR"}, {POLLHUP, "HUP"}, {POLLRDHUP, "RDHUP"},
    };
    std::string s;
    for (const auto& [bit, name] : names) {
        if (events & bit) {
            s += s.empty() ? "" : "|";
            s += name;
        }
    }
    return s.empty() ? "none" : s;
}

// poll() of one descriptor: the returned events (poll_names), "timeout", or the errno name.
inline std::string poll_once(int fd, short events, int timeout_ms)
{
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0) {
        return errno_name(errno);
    }
    return r == 0 ? "timeout" : poll_names(static_cast<unsigned short>(p.revents));
}

// A thread that is always joined: on scope exit a thread still running is first unblocked (shutdown of its sockets)
// so that the join cannot hang. Declare it after the sockets it uses.
class Thread {
public:
    Thread(std::function<void()> body, std::function<void()> unblock)
        : unblock_(std::move(unblock)), thread_([this, body = std::move(body)] {
              body();
              finished_.store(true);
          })
    {
    }
    Thread(const Thread&) = delete;
    Thread& operator=(const Thread&) = delete;
    ~Thread()
    {
        if (thread_.joinable()) {
            // A sender whose last bytes the reader already has may not have returned from send() yet: give it a
            // second before the shutdown, or the shutdown hits a socket the story goes on using (seen in the 6.1 VM:
            // ipv6_loopback's second direction got EPIPE on plain TCP).
            for (int i = 0; i < 100 && !finished_.load(); ++i) {
                sleep_ms(10);
            }
            if (!finished_.load() && unblock_) {
                unblock_();
            }
            thread_.join();
        }
    }
    void join()
    {
        if (thread_.joinable()) {
            thread_.join();
        }
    }

private:
    std::function<void()> unblock_;
    std::atomic<bool> finished_{false};
    std::thread thread_;
};

// Sends the pattern [offset, offset + len) in sends of at most `chunk` bytes; -1 with errno on the first error.
inline long long send_chunks(int fd, uint32_t seed, uint64_t offset, size_t len, size_t chunk)
{
    std::vector<unsigned char> buf(chunk);
    size_t sent = 0;
    while (sent < len) {
        size_t n = std::min(chunk, len - sent);
        pattern(seed, offset + sent, buf.data(), n);
        size_t done = 0;
        while (done < n) {
            ssize_t r = ::send(fd, buf.data() + done, n - done, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return -1;
            }
            done += static_cast<size_t>(r);
        }
        sent += n;
    }
    return static_cast<long long>(sent);
}

// What a bounded write saw: how many bytes went out and how it ended: "complete", "timeout" or the errno name.
struct Sent {
    long long bytes = 0;
    std::string end;
};

// Sends the pattern [offset, offset + len) as an event-driven application does, whatever the socket's mode: an
// output buffer of up to `chunk` bytes, offered to send(MSG_DONTWAIT) until it is taken (a short write is not an
// error: the rest goes in the next call), poll() for POLLOUT on EAGAIN, until every byte is out or timeout_ms passed.
inline Sent send_stream(int fd, uint32_t seed, uint64_t offset, size_t len, size_t chunk, int timeout_ms)
{
    Sent s;
    Deadline deadline(timeout_ms);
    std::vector<unsigned char> buf(std::max<size_t>(std::min(chunk, len), 1));
    size_t sent = 0;   // bytes of the stream taken by the kernel
    size_t filled = 0; // bytes of the stream in buf so far: buf holds [filled - buf_len, filled)
    size_t buf_len = 0;
    size_t at = 0; // taken of buf
    while (sent < len) {
        if (at == buf_len) {
            buf_len = std::min(buf.size(), len - filled);
            pattern(seed, offset + filled, buf.data(), buf_len);
            filled += buf_len;
            at = 0;
        }
        const ssize_t r = ::send(fd, buf.data() + at, buf_len - at, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            at += static_cast<size_t>(r);
            sent += static_cast<size_t>(r);
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (deadline.passed()) {
                s.bytes = static_cast<long long>(sent);
                s.end = "timeout";
                return s;
            }
            pollfd p{fd, POLLOUT, 0};
            ::poll(&p, 1, std::min(deadline.left_ms(), 100));
            continue;
        }
        s.bytes = static_cast<long long>(sent);
        s.end = r < 0 ? errno_name(errno) : "send returned 0";
        return s;
    }
    s.bytes = static_cast<long long>(sent);
    s.end = "complete";
    return s;
}

// Records a Sent under a prefix: "<what> bytes", "<what> end".
inline void note_sent(Obs& obs, const std::string& what, const Sent& s)
{
    obs.note(what + " bytes", s.bytes);
    obs.note(what + " end", s.end);
}

// An application's request and answer, 100 bytes each way (stream `seed` from the client, `seed` + 1 from the
// server), recorded. On non-blocking sockets, once both ends have read (make_pair's warm-up), sockredir redirects
// both: the scenario is then shown taking the redirect path (the harness reads its counter).
inline void exchange(Obs& obs, int client, int server, uint32_t seed)
{
    note_sent(obs, "request", send_stream(client, seed, 0, 100, 100, 2000));
    note_read(obs, "request read", read_stream(server, seed, 0, 100, 2000));
    note_sent(obs, "answer", send_stream(server, seed + 1, 0, 100, 100, 2000));
    note_read(obs, "answer read", read_stream(client, seed + 1, 0, 100, 2000));
}

// PairOptions for an event-driven application: both ends non-blocking.
inline PairOptions nonblocking(Family family = Family::v4)
{
    PairOptions o;
    o.family = family;
    o.client_nonblock = true;
    o.server_nonblock = true;
    return o;
}

} // namespace conform::helpers
