// Traffic torture under attach/detach churn: hundreds of two-way connections, every byte checked, nothing left over.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/ebpf/sys.hpp"

using namespace e2e;
using sockredir::base::Fd;
using Clock = std::chrono::steady_clock;

namespace {

// The run: connections start over kStartWindowMs (kBurst of them at once at the beginning), each must finish within
// kConnDeadlineMs of its start. The churn of attach/detach runs for as long as the traffic does.
constexpr int kConnections = 320;
constexpr int kBurst = 96;
constexpr int kStartWindowMs = 27000;
constexpr int kConnDeadlineMs = 30000;
constexpr uint32_t kMagic = 0x53525443;
constexpr size_t kMaxWrite = 1 << 20;

struct Rng {
    uint64_t state;
    uint64_t next()
    {
        uint64_t x = (state += 0x9e3779b97f4a7c15ULL);
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
    uint64_t below(uint64_t n) { return next() % n; }
    double unit() { return static_cast<double>(next() >> 11) / static_cast<double>(1ULL << 53); }
};

// Log-uniform from 1 byte to 1 MiB: single bytes are as likely as whole mebibytes.
uint32_t write_size(Rng& rng)
{
    const auto n = static_cast<uint64_t>(std::exp2(rng.unit() * 20.0));
    return static_cast<uint32_t>(std::clamp<uint64_t>(n, 1, kMaxWrite));
}

// One direction of a connection: the writes in order, the pause before each, and where the half-close wait sits.
struct DirectionPlan {
    uint32_t seed = 0;
    std::vector<uint32_t> sizes;
    std::vector<uint16_t> gaps_ms;
    size_t late_from = 0; // writes from here on wait for the peer's EOF; == sizes.size(): none do
    bool sendfile = false;
    uint64_t total() const
    {
        uint64_t t = 0;
        for (auto s : sizes)
            t += s;
        return t;
    }
};

struct ConnPlan {
    uint32_t id = 0;
    int family = AF_INET;
    bool epoll_server = false;
    bool client_late = false; // the client keeps sending after the server's SHUT_WR; else the other way round
    bool peek_client = false; // the receiver checks FIONREAD and MSG_PEEK against the reads that follow
    bool peek_server = false;
    int start_ms = 0;
    DirectionPlan up;   // client -> server
    DirectionPlan down; // server -> client
    std::string describe() const
    {
        std::ostringstream s;
        s << "connection " << id << " (" << (family == AF_INET ? "IPv4" : "IPv6") << ", "
          << (epoll_server ? "epoll" : "threaded") << " server, " << (client_late ? "client" : "server")
          << " sends after the half-close" << (up.sendfile ? ", sendfile up" : "")
          << (down.sendfile ? ", sendfile down" : "") << (peek_client || peek_server ? ", peek" : "") << ")";
        return s.str();
    }
};

DirectionPlan make_direction(Rng& rng, uint32_t seed, bool late)
{
    DirectionPlan d;
    d.seed = seed;
    const size_t writes = 3 + rng.below(18);
    for (size_t i = 0; i < writes; ++i) {
        d.sizes.push_back(write_size(rng));
        // Pauses keep connections alive for seconds, so that many overlap and many straddle a transition.
        d.gaps_ms.push_back(static_cast<uint16_t>(rng.below(5) == 0 ? 0 : rng.below(600)));
    }
    d.late_from = late ? writes - 1 - rng.below(writes / 2) : writes;
    d.sendfile = rng.below(4) == 0;
    return d;
}

std::vector<ConnPlan> make_plans(uint64_t seed)
{
    Rng rng{seed};
    std::vector<ConnPlan> plans(kConnections);
    for (int i = 0; i < kConnections; ++i) {
        ConnPlan& p = plans[i];
        p.id = static_cast<uint32_t>(i);
        p.family = rng.below(2) == 0 ? AF_INET : AF_INET6;
        p.epoll_server = rng.below(2) == 0;
        p.client_late = rng.below(2) == 0;
        p.peek_client = rng.below(3) == 0;
        p.peek_server = rng.below(3) == 0;
        p.start_ms =
            i < kBurst ? static_cast<int>(rng.below(500)) : 500 + static_cast<int>(rng.below(kStartWindowMs - 500));
        const auto base = static_cast<uint32_t>(seed * 2654435761ULL) + 2 * p.id;
        p.up = make_direction(rng, base | 1, p.client_late);
        p.down = make_direction(rng, base + 2, !p.client_late);
    }
    return plans;
}

// The receiver's check: every byte against the sender's pattern at its stream offset, and no byte too many.
class StreamCheck {
public:
    StreamCheck(uint32_t seed, uint64_t expected, std::atomic<uint64_t>* progress)
        : seed_(seed), expected_(expected), progress_(progress)
    {
    }
    void feed(const unsigned char* data, size_t n)
    {
        if (got_ + n > expected_)
            throw std::runtime_error("received " + std::to_string(got_ + n) + " bytes, only " +
                                     std::to_string(expected_) + " were sent (duplication)");
        expect_.resize(std::max(expect_.size(), n));
        fill_pattern(seed_, got_, expect_.data(), n);
        if (std::memcmp(data, expect_.data(), n) != 0) {
            size_t at = 0;
            while (data[at] == expect_[at])
                ++at;
            throw std::runtime_error("wrong byte at stream offset " + std::to_string(got_ + at) +
                                     " (loss, duplication or reordering)");
        }
        got_ += n;
        progress_->store(got_);
    }
    void finish() const
    {
        if (got_ != expected_)
            throw std::runtime_error("EOF after " + std::to_string(got_) + " of " + std::to_string(expected_) +
                                     " bytes (loss)");
    }

private:
    uint32_t seed_;
    uint64_t expected_;
    uint64_t got_ = 0;
    std::atomic<uint64_t>* progress_;
    std::vector<unsigned char> expect_;
};

// An unlinked temporary file holding `bytes` of the pattern, for sendfile(2): gone on every path with its fd.
Fd pattern_file(uint32_t seed, uint64_t bytes)
{
    char name[] = "/tmp/sockredir-torture-XXXXXX";
    Fd fd(::mkostemp(name, O_CLOEXEC));
    if (!fd)
        throw_errno("mkostemp");
    ::unlink(name);
    std::vector<unsigned char> buf(kMaxWrite);
    for (uint64_t off = 0; off < bytes;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - off));
        fill_pattern(seed, off, buf.data(), n);
        if (::pwrite(fd.get(), buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n))
            throw_errno("writing the sendfile source");
        off += n;
    }
    return fd;
}

// Reads exactly n bytes that must already be there (MSG_DONTWAIT): false when fewer were readable.
bool read_now(int fd, unsigned char* buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        const ssize_t r = ::recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += static_cast<size_t>(r);
    }
    return true;
}

// FIONREAD, then MSG_PEEK, then the reads: what FIONREAD promised and what the peek showed must be what is read.
// Returns false when FIONREAD reports nothing (the caller then reads normally).
bool peek_round(int fd, StreamCheck& check, std::vector<unsigned char>& peeked, std::vector<unsigned char>& buf)
{
    int avail = -1;
    if (::ioctl(fd, FIONREAD, &avail) != 0)
        throw_errno("FIONREAD");
    if (avail < 0)
        throw std::runtime_error("FIONREAD returned " + std::to_string(avail));
    if (avail == 0)
        return false;
    const size_t want = std::min<size_t>(static_cast<size_t>(avail), peeked.size());
    ssize_t k;
    do {
        k = ::recv(fd, peeked.data(), want, MSG_PEEK | MSG_DONTWAIT);
    } while (k < 0 && errno == EINTR);
    if (k <= 0)
        throw std::runtime_error("FIONREAD said " + std::to_string(avail) + " bytes but MSG_PEEK returned " +
                                 std::to_string(k) + (k < 0 ? std::string(" (") + std::strerror(errno) + ")" : ""));
    const auto peek_len = static_cast<size_t>(k);
    if (!read_now(fd, buf.data(), peek_len))
        throw std::runtime_error("MSG_PEEK showed " + std::to_string(peek_len) + " bytes that a read did not return");
    if (std::memcmp(buf.data(), peeked.data(), peek_len) != 0)
        throw std::runtime_error("the read returned other bytes than MSG_PEEK showed");
    check.feed(buf.data(), peek_len);
    // The rest that FIONREAD counted must be readable right now too: FIONREAD may never promise more.
    for (size_t left = static_cast<size_t>(avail) - peek_len; left > 0;) {
        const size_t n = std::min(left, buf.size());
        if (!read_now(fd, buf.data(), n))
            throw std::runtime_error("FIONREAD said " + std::to_string(avail) + " bytes, fewer were readable");
        check.feed(buf.data(), n);
        left -= n;
    }
    return true;
}

void receive_blocking(int fd, StreamCheck& check, bool peek)
{
    std::vector<unsigned char> buf(256 * 1024), peeked(peek ? 256 * 1024 : 0);
    for (;;) {
        if (peek && peek_round(fd, check, peeked, buf))
            continue;
        const ssize_t n = recv_blocking(fd, buf.data(), buf.size());
        if (n < 0)
            throw_errno("recv");
        if (n == 0)
            break;
        check.feed(buf.data(), static_cast<size_t>(n));
    }
    check.finish();
}

// Sends one direction in order with blocking I/O; wait_late() is called before the first write after the half-close.
void send_blocking(int fd, const DirectionPlan& d, const std::function<void()>& wait_late)
{
    Fd file;
    if (d.sendfile)
        file = pattern_file(d.seed, d.total());
    std::vector<unsigned char> buf;
    uint64_t offset = 0;
    for (size_t i = 0; i < d.sizes.size(); ++i) {
        if (i == d.late_from)
            wait_late();
        sleep_ms(d.gaps_ms[i]);
        const uint32_t n = d.sizes[i];
        if (d.sendfile) {
            auto off = static_cast<off_t>(offset);
            for (size_t left = n; left > 0;) {
                const ssize_t w = ::sendfile(fd, file.get(), &off, left);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    throw_errno("sendfile");
                left -= static_cast<size_t>(w);
            }
        } else {
            buf.resize(n);
            fill_pattern(d.seed, offset, buf.data(), n);
            send_all(fd, buf.data(), n);
        }
        offset += n;
    }
    if (::shutdown(fd, SHUT_WR) != 0)
        throw_errno("shutdown(SHUT_WR)");
}

// Shared by the traffic threads of the child: progress and the outcome of every connection.
struct ConnState {
    std::atomic<uint64_t> up_got{0}, down_got{0};
    std::atomic<bool> client_done{false}, server_done{false};
    std::atomic<int> sides_done{0}; // the second end to finish counts the connection
    std::atomic<int64_t> established_ns{0}, finished_ns{0};
};

struct Traffic {
    const std::vector<ConnPlan>& plans;
    std::vector<ConnState> states;
    std::mutex mu;
    std::vector<std::string> errors;
    std::atomic<int> live{0}, max_live{0}, finished{0};

    explicit Traffic(const std::vector<ConnPlan>& p) : plans(p), states(p.size()) {}

    void error(const std::string& text)
    {
        std::lock_guard lock(mu);
        errors.push_back(text);
    }
    // Both ends are done (or failed): the connection counts as finished, exactly once. (Testing the two flags
    // after setting one let both ends see both set and count the connection twice, so the run could end while
    // another connection still had bytes in flight.)
    void side_done(uint32_t id, bool client)
    {
        ConnState& s = states[id];
        (client ? s.client_done : s.server_done) = true;
        if (s.sides_done.fetch_add(1) == 1) {
            s.finished_ns = Clock::now().time_since_epoch().count();
            --live;
            ++finished;
        }
    }
};

int64_t now_ns()
{
    return Clock::now().time_since_epoch().count();
}

// One end with blocking I/O: a sender thread, the reader here. Throws the first error of either.
void run_blocking_end(int fd, const DirectionPlan& out, const DirectionPlan& in, bool peek,
                      std::atomic<uint64_t>* progress)
{
    std::mutex mu;
    std::condition_variable cv;
    bool peer_eof = false;
    std::string send_error;
    std::thread sender([&] {
        try {
            send_blocking(fd, out, [&] {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return peer_eof; });
            });
        } catch (const std::exception& e) {
            std::lock_guard lock(mu);
            send_error = e.what();
            ::shutdown(fd, SHUT_RDWR); // unblocks the reader
        }
    });
    std::string recv_error;
    try {
        StreamCheck check(in.seed, in.total(), progress);
        receive_blocking(fd, check, peek);
    } catch (const std::exception& e) {
        recv_error = e.what();
        ::shutdown(fd, SHUT_RDWR);
    }
    {
        std::lock_guard lock(mu);
        peer_eof = true;
    }
    cv.notify_all();
    sender.join();
    if (!recv_error.empty())
        throw std::runtime_error("receiving: " + recv_error);
    if (!send_error.empty())
        throw std::runtime_error("sending: " + send_error);
}

uint32_t read_header(const unsigned char* h)
{
    uint32_t magic, id;
    std::memcpy(&magic, h, 4);
    std::memcpy(&id, h + 4, 4);
    if (magic != kMagic)
        throw std::runtime_error("bad connection header");
    return id;
}

void client(Traffic& t, const ConnPlan& p, uint16_t port)
{
    ConnState& s = t.states[p.id];
    try {
        Fd c = connect_to(p.family, p.family == AF_INET ? "127.0.0.1" : "::1", port);
        s.established_ns = now_ns();
        const int live = ++t.live;
        for (int seen = t.max_live; live > seen && !t.max_live.compare_exchange_weak(seen, live);) {
        }
        unsigned char header[8];
        std::memcpy(header, &kMagic, 4);
        std::memcpy(header + 4, &p.id, 4);
        if (::send(c.get(), header, sizeof header, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof header))
            throw_errno("sending the header");
        run_blocking_end(c.get(), p.up, p.down, p.peek_client, &s.down_got);
    } catch (const std::exception& e) {
        t.error(p.describe() + ", client: " + e.what());
        if (s.established_ns == 0) {
            s.established_ns = now_ns();
            ++t.live;
            t.side_done(p.id, false);
        }
    }
    t.side_done(p.id, true);
}

void threaded_server_conn(Traffic& t, Fd conn)
{
    unsigned char header[8];
    if (!recv_exact(conn.get(), header, sizeof header)) {
        t.error("threaded server: no connection header");
        return;
    }
    uint32_t id = 0;
    try {
        id = read_header(header);
    } catch (const std::exception& e) {
        t.error(std::string("threaded server: ") + e.what());
        return;
    }
    const ConnPlan& p = t.plans.at(id);
    try {
        run_blocking_end(conn.get(), p.down, p.up, p.peek_server, &t.states[id].up_got);
    } catch (const std::exception& e) {
        t.error(p.describe() + ", threaded server: " + e.what());
    }
    t.side_done(id, false);
}

// A non-blocking connection of the epoll server: the same plan as the threaded one, driven by readiness and timers.
struct EpollConn {
    Fd fd;
    unsigned char header[8];
    size_t header_got = 0;
    const ConnPlan* plan = nullptr;
    std::optional<StreamCheck> check;
    bool eof = false, shut = false, write_blocked = false;
    size_t write_index = 0;
    uint32_t written = 0; // of the current write
    uint64_t offset = 0;
    Clock::time_point next_write{};
    std::vector<unsigned char> out;
    Fd file;
};

void epoll_read(Traffic& t, EpollConn& c, std::vector<unsigned char>& peeked, std::vector<unsigned char>& buf)
{
    while (c.header_got < sizeof c.header) {
        const ssize_t n = ::recv(c.fd.get(), c.header + c.header_got, sizeof c.header - c.header_got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0)
            throw std::runtime_error("no connection header");
        c.header_got += static_cast<size_t>(n);
    }
    if (c.plan == nullptr) {
        c.plan = &t.plans.at(read_header(c.header));
        c.check.emplace(c.plan->up.seed, c.plan->up.total(), &t.states[c.plan->id].up_got);
        if (c.plan->down.sendfile)
            c.file = pattern_file(c.plan->down.seed, c.plan->down.total());
        c.next_write = Clock::now() + std::chrono::milliseconds(c.plan->down.gaps_ms[0]);
    }
    while (!c.eof) {
        if (c.plan->peek_server && peek_round(c.fd.get(), *c.check, peeked, buf))
            continue;
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0)
            throw_errno("recv");
        if (n == 0) {
            c.check->finish();
            c.eof = true;
        } else {
            c.check->feed(buf.data(), static_cast<size_t>(n));
        }
    }
}

void epoll_write(EpollConn& c, Clock::time_point now)
{
    if (c.plan == nullptr || c.shut || c.write_blocked)
        return;
    const DirectionPlan& d = c.plan->down;
    while (c.write_index < d.sizes.size()) {
        if (c.write_index >= d.late_from && !c.eof)
            return; // half-close: these writes go only after the peer's FIN
        if (c.written == 0 && now < c.next_write)
            return;
        const uint32_t n = d.sizes[c.write_index];
        ssize_t w;
        if (d.sendfile) {
            auto off = static_cast<off_t>(c.offset + c.written);
            w = ::sendfile(c.fd.get(), c.file.get(), &off, n - c.written);
        } else {
            if (c.written == 0) {
                c.out.resize(n);
                fill_pattern(d.seed, c.offset, c.out.data(), n);
            }
            w = ::send(c.fd.get(), c.out.data() + c.written, n - c.written, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            c.write_blocked = true; // until EPOLLOUT
            return;
        }
        if (w <= 0)
            throw_errno(d.sendfile ? "sendfile" : "send");
        c.written += static_cast<uint32_t>(w);
        if (c.written == n) {
            c.offset += n;
            c.written = 0;
            if (++c.write_index < d.sizes.size())
                c.next_write = now + std::chrono::milliseconds(d.gaps_ms[c.write_index]);
        }
    }
    if (::shutdown(c.fd.get(), SHUT_WR) != 0)
        throw_errno("shutdown(SHUT_WR)");
    c.shut = true;
}

// One thread, edge-triggered epoll over both epoll listeners and all of their connections.
void epoll_server(Traffic& t, const std::vector<int>& listeners, const std::atomic<bool>& stop)
{
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep)
        throw_errno("epoll_create1");
    constexpr uint64_t kListenerTag = 1ULL << 63;
    for (size_t i = 0; i < listeners.size(); ++i) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kListenerTag | i;
        if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, listeners[i], &ev) != 0)
            throw_errno("epoll_ctl listener");
    }
    std::map<uint64_t, std::unique_ptr<EpollConn>> conns;
    uint64_t next_key = 0;
    std::vector<unsigned char> peeked(256 * 1024), buf(256 * 1024);
    auto fail = [&](std::map<uint64_t, std::unique_ptr<EpollConn>>::iterator it, const std::string& what) {
        EpollConn& c = *it->second;
        if (c.plan != nullptr) {
            t.error(c.plan->describe() + ", epoll server: " + what);
            t.side_done(c.plan->id, false);
        } else {
            t.error("epoll server: " + what);
        }
        return conns.erase(it);
    };
    epoll_event events[64];
    while (!stop) {
        // Wake for the earliest paced write, at the latest every 50 ms to notice `stop`.
        auto now = Clock::now();
        int timeout = 50;
        for (const auto& [key, c] : conns)
            if (c->plan != nullptr && !c->shut && !c->write_blocked && c->written == 0 &&
                c->write_index < c->plan->down.sizes.size() && (c->write_index < c->plan->down.late_from || c->eof))
                timeout = std::min<int>(
                    timeout,
                    static_cast<int>(std::max<int64_t>(
                        0, std::chrono::duration_cast<std::chrono::milliseconds>(c->next_write - now).count())));
        const int n = ::epoll_wait(ep.get(), events, 64, timeout);
        if (n < 0 && errno != EINTR)
            throw_errno("epoll_wait");
        now = Clock::now();
        for (int i = 0; i < n; ++i) {
            const uint64_t tag = events[i].data.u64;
            if (tag & kListenerTag) {
                for (;;) {
                    Fd conn(::accept4(listeners[tag & ~kListenerTag], nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
                    if (!conn)
                        break;
                    epoll_event ev{};
                    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    ev.data.u64 = next_key;
                    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, conn.get(), &ev) != 0)
                        throw_errno("epoll_ctl");
                    auto c = std::make_unique<EpollConn>();
                    c->fd = std::move(conn);
                    conns.emplace(next_key++, std::move(c));
                }
                continue;
            }
            auto it = conns.find(tag);
            if (it == conns.end())
                continue;
            if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                it->second->write_blocked = false;
            try {
                epoll_read(t, *it->second, peeked, buf);
            } catch (const std::exception& e) {
                fail(it, e.what());
            }
        }
        for (auto it = conns.begin(); it != conns.end();) {
            EpollConn& c = *it->second;
            try {
                epoll_write(c, now);
            } catch (const std::exception& e) {
                it = fail(it, e.what());
                continue;
            }
            if (c.eof && c.shut) {
                t.side_done(c.plan->id, false);
                it = conns.erase(it);
            } else {
                ++it;
            }
        }
    }
}

// Fails when more than this many ms pass after a connection's start without it finishing.
std::string hung_connections(const Traffic& t, int64_t t0)
{
    std::string text;
    const int64_t now = now_ns();
    for (const auto& p : t.plans) {
        const ConnState& s = t.states[p.id];
        const bool started = now - t0 > static_cast<int64_t>(p.start_ms) * 1000000;
        if (!started || (s.client_done && s.server_done))
            continue;
        if (now - t0 < (static_cast<int64_t>(p.start_ms) + kConnDeadlineMs) * 1000000)
            continue;
        text += p.describe() + " hangs: client " + (s.client_done ? "done" : "not done") + ", server " +
                (s.server_done ? "done" : "not done") + ", up " + std::to_string(s.up_got) + "/" +
                std::to_string(p.up.total()) + ", down " + std::to_string(s.down_got) + "/" +
                std::to_string(p.down.total()) + "; ";
    }
    return text;
}

// The child: in the cgroup and a private netns, runs every planned connection; one message with the outcome.
int run_traffic(const Channel& ch, const std::string& cgroup, const std::vector<ConnPlan>& plans)
{
    enter_cgroup(cgroup);
    enter_private_netns();
    ::signal(SIGPIPE, SIG_IGN); // sendfile(2) has no MSG_NOSIGNAL
    Traffic t(plans);
    // [family][epoll]: four listeners, deep backlogs for the burst of connects at the start.
    Fd listeners[2][2];
    uint16_t ports[2][2];
    for (int f = 0; f < 2; ++f)
        for (int e = 0; e < 2; ++e) {
            listeners[f][e] = listen_on(f == 0 ? AF_INET : AF_INET6, f == 0 ? "127.0.0.1" : "::1", 0);
            if (::listen(listeners[f][e].get(), 1024) != 0)
                throw_errno("listen");
            ports[f][e] = local_port(listeners[f][e].get());
        }
    for (int f = 0; f < 2; ++f)
        if (::fcntl(listeners[f][1].get(), F_SETFL, O_NONBLOCK) != 0)
            throw_errno("O_NONBLOCK");

    std::atomic<bool> stop{false};
    std::mutex threads_mu;
    std::vector<std::thread> threads;
    std::vector<std::thread> acceptors;
    for (int f = 0; f < 2; ++f)
        acceptors.emplace_back([&, fd = listeners[f][0].get()] {
            for (;;) {
                Fd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
                if (!conn) {
                    if (stop)
                        return;
                    continue;
                }
                std::lock_guard lock(threads_mu);
                threads.emplace_back([&t, c = std::make_shared<Fd>(std::move(conn))]() mutable {
                    threaded_server_conn(t, std::move(*c));
                });
            }
        });
    std::string epoll_error;
    std::thread epoller([&] {
        try {
            epoll_server(t, {listeners[0][1].get(), listeners[1][1].get()}, stop);
        } catch (const std::exception& e) {
            epoll_error = e.what();
        }
    });

    ch.send("ready");
    const int64_t t0 = now_ns();
    std::vector<const ConnPlan*> order;
    for (const auto& p : plans)
        order.push_back(&p);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->start_ms < b->start_ms; });
    std::vector<std::thread> clients;
    std::string hung;
    size_t next = 0;
    while (t.finished < static_cast<int>(plans.size())) {
        const int64_t elapsed_ms = (now_ns() - t0) / 1000000;
        while (next < order.size() && order[next]->start_ms <= elapsed_ms) {
            const ConnPlan& p = *order[next++];
            clients.emplace_back(
                [&t, &p, port = ports[p.family == AF_INET ? 0 : 1][p.epoll_server ? 1 : 0]] { client(t, p, port); });
        }
        hung = hung_connections(t, t0);
        if (!hung.empty() || !epoll_error.empty())
            break;
        sleep_ms(5);
    }

    std::ostringstream out;
    uint64_t up = 0, down = 0;
    for (const auto& p : plans) {
        up += t.states[p.id].up_got;
        down += t.states[p.id].down_got;
    }
    {
        std::lock_guard lock(t.mu);
        std::string errors = hung + epoll_error;
        for (size_t i = 0; i < t.errors.size() && i < 20; ++i)
            errors += t.errors[i] + "; ";
        out << "result conns=" << t.finished << " up=" << up << " down=" << down << " max_live=" << t.max_live
            << " eagain=" << spurious_eagain()
            << " errors=" << t.errors.size() + (hung.empty() ? 0 : 1) + (epoll_error.empty() ? 0 : 1)
            << " text=" << errors << "\n";
    }
    out << "times";
    for (const auto& p : plans)
        out << ' ' << t.states[p.id].established_ns << ':' << t.states[p.id].finished_ns;
    ch.send(out.str());
    if (!hung.empty() || !epoll_error.empty())
        ::_exit(3); // threads are stuck in the kernel: leave them to the process exit
    stop = true;
    for (int f = 0; f < 2; ++f)
        ::shutdown(listeners[f][0].get(), SHUT_RDWR);
    for (auto& a : acceptors)
        a.join();
    epoller.join();
    for (auto& c : clients)
        c.join();
    std::lock_guard lock(threads_mu);
    for (auto& th : threads)
        th.join();
    return 0;
}

// --- the parent: counters of every generation of maps, and the churn ------------------------------------------------

// Each attach creates new maps; their counters are kept open here so that the whole run can be summed at the end.
class Generations {
public:
    void hold(const std::string& dir)
    {
        const std::string path = dir + "/" + SOCKREDIR_MAP_COUNTERS;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0)
            return;
        try {
            Fd fd = sockredir::ebpf::sys::obj_get(path);
            const uint32_t id = sockredir::ebpf::sys::map_info(fd.get()).id;
            std::lock_guard lock(mu_);
            fds_.emplace(id, std::move(fd));
        } catch (const std::exception&) {
            // Unpinned by a concurrent take-down: nothing more to hold.
        }
    }
    std::array<uint64_t, SOCKREDIR_COUNTER_MAX> sum() const
    {
        std::array<uint64_t, SOCKREDIR_COUNTER_MAX> total{};
        // Larger than any count of possible CPUs: the kernel fills one slot per possible CPU, the rest stays 0.
        std::vector<uint64_t> per_cpu(4096);
        std::lock_guard lock(mu_);
        for (const auto& [id, fd] : fds_)
            for (uint32_t i = 0; i < SOCKREDIR_COUNTER_MAX; ++i) {
                std::fill(per_cpu.begin(), per_cpu.end(), 0);
                if (sockredir::ebpf::sys::map_lookup(fd.get(), &i, per_cpu.data()))
                    for (auto v : per_cpu)
                        total[i] += v;
            }
        return total;
    }
    size_t count() const
    {
        std::lock_guard lock(mu_);
        return fds_.size();
    }
    void release()
    {
        std::lock_guard lock(mu_);
        fds_.clear();
    }

private:
    mutable std::mutex mu_;
    std::map<uint32_t, Fd> fds_;
};

struct Transition {
    int64_t at_ns;
    bool attached_after;
};

struct Churn {
    int detaches = 0, attaches = 0, killed_attaches = 0, killed_detaches = 0;
    std::vector<Transition> log;
    std::vector<std::string> errors;
    std::string steps_killed;
};

void hold_all(const Sandbox& sb, Generations& gens)
{
    gens.hold(sb.pin_dir());
    for (const auto& name : list_dir(sb.bpffs.root()))
        if (name.rfind("sockredir-attaching-", 0) == 0)
            gens.hold(sb.bpffs.root() + "/" + name);
}

// Detach, attach, killed attach + attach, killed detach + attach, with pauses of traffic in every state.
void churn(const Sandbox& sb, Generations& gens, const std::atomic<bool>& stop, Churn& c, uint64_t seed)
{
    static const char* const kAttachSteps[] = {"maps", "pin", "attach_msg", "attach_sockops", "publish", "programs"};
    static const char* const kDetachSteps[] = {"drain", "detach_sockops", "evict"};
    Rng rng{seed ^ 0x5eed};
    // Attached phases last longer than the others, so that redirection carries a fair share of the bytes.
    auto pause = [&](bool attached) {
        for (int ms = (attached ? 400 : 150) + static_cast<int>(rng.below(attached ? 900 : 400)); ms > 0 && !stop;
             ms -= 10)
            sleep_ms(10);
    };
    auto expect_ok = [&](const RunResult& r, const std::string& what) {
        if (r.exit_code != 0)
            c.errors.push_back(what + " failed: " + r.err);
    };
    auto attach = [&] {
        expect_ok(sb.attach(), "attach");
        hold_all(sb, gens);
        c.log.push_back({now_ns(), true});
        ++c.attaches;
    };
    for (int cycle = 0; !stop; ++cycle) {
        expect_ok(sb.detach(), "detach");
        c.log.push_back({now_ns(), false});
        ++c.detaches;
        pause(false);
        if (cycle % 2 == 1) {
            const char* step = kAttachSteps[(cycle / 2) % std::size(kAttachSteps)];
            RunOptions kill;
            kill.env.push_back(std::string("SOCKREDIR_TEST_KILL_AFTER=") + step);
            const auto r = sb.attach(kill);
            if (r.signal != SIGKILL)
                c.errors.push_back(std::string("attach with SOCKREDIR_TEST_KILL_AFTER=") + step + " was not killed");
            hold_all(sb, gens);
            // From "attach_sockops" on, the killed attach left a live attachment behind (staging or published).
            const bool live = std::strcmp(step, "attach_sockops") == 0 || std::strcmp(step, "publish") == 0;
            c.log.push_back({now_ns(), live});
            ++c.killed_attaches;
            c.steps_killed += std::string(c.steps_killed.empty() ? "" : " ") + "attach:" + step;
            pause(live);
        }
        if (stop)
            break;
        attach();
        pause(true);
        if (cycle % 3 == 2 && !stop) {
            const char* step = kDetachSteps[(cycle / 3) % std::size(kDetachSteps)];
            RunOptions kill;
            kill.env.push_back(std::string("SOCKREDIR_TEST_KILL_AFTER=") + step);
            const auto r = sb.detach(kill);
            if (r.signal != SIGKILL)
                c.errors.push_back(std::string("detach with SOCKREDIR_TEST_KILL_AFTER=") + step + " was not killed");
            // Killed after "drain": still attached but sending by TCP; after "detach_sockops": no new sockets.
            c.log.push_back({now_ns(), false});
            ++c.killed_detaches;
            c.steps_killed += std::string(" detach:") + step;
            pause(false);
            if (!stop) {
                attach();
                pause(true);
            }
        }
    }
}

uint64_t run_seed()
{
    if (const char* s = std::getenv("SOCKREDIR_TORTURE_SEED"))
        return std::strtoull(s, nullptr, 0);
    return static_cast<uint64_t>(now_ns());
}

// How each connection met the churn: established while attached or detached, and whether a transition fell in it.
struct Exposure {
    int while_attached = 0, while_detached = 0, straddling = 0;
};

Exposure classify(const std::string& times, const std::vector<Transition>& log, bool attached_at_start)
{
    Exposure e;
    std::istringstream in(times.substr(times.find(' ') + 1));
    std::string item;
    while (in >> item) {
        const auto colon = item.find(':');
        const int64_t start = std::stoll(item.substr(0, colon)), end = std::stoll(item.substr(colon + 1));
        bool attached = attached_at_start;
        bool straddles = false;
        for (const auto& tr : log) {
            if (tr.at_ns <= start)
                attached = tr.attached_after;
            else if (tr.at_ns < end)
                straddles = true;
        }
        ++(attached ? e.while_attached : e.while_detached);
        e.straddling += straddles;
    }
    return e;
}

} // namespace

TEST_CASE("hundreds of two-way connections through attach, detach and killed attaches lose, duplicate and reorder "
          "nothing, and leave nothing behind")
{
    E2E_REQUIRE_KERNEL();
    const auto started = Clock::now();
    const uint64_t seed = run_seed();
    MESSAGE("torture seed " << seed << " (SOCKREDIR_TORTURE_SEED to repeat)");
    const auto plans = make_plans(seed);
    uint64_t planned = 0;
    int sendfiles = 0, epolls = 0, v6 = 0, peeks = 0;
    for (const auto& p : plans) {
        planned += p.up.total() + p.down.total();
        sendfiles += p.up.sendfile + p.down.sendfile;
        epolls += p.epoll_server;
        v6 += p.family == AF_INET6;
        peeks += p.peek_client + p.peek_server;
    }

    const auto ids_before = snapshot_ids();
    Generations gens;
    Churn c;
    std::string result;
    {
        Sandbox sb;
        const auto a = sb.attach();
        REQUIRE_MESSAGE(a.exit_code == 0, a.err);
        hold_all(sb, gens);
        Child child = spawn([&](const Channel& ch) { return run_traffic(ch, sb.cgroup.path(), plans); });
        REQUIRE(child.channel().receive() == "ready");

        std::atomic<bool> stop{false};
        std::thread churner([&] { churn(sb, gens, stop, c, seed); });
        // The churn must end on every path out of this block, a thrown check included.
        struct Joiner {
            std::atomic<bool>& stop;
            std::thread& thread;
            ~Joiner()
            {
                stop = true;
                if (thread.joinable())
                    thread.join();
            }
        } joiner{stop, churner};
        try {
            result = child.channel().receive(kStartWindowMs + kConnDeadlineMs + 15000);
        } catch (const std::exception& e) {
            result = std::string("no result from the traffic child: ") + e.what();
        }
        stop = true;
        churner.join();
        const int code = child.wait(30000);
        CHECK_MESSAGE(code == 0, "traffic child exit " << code);

        // The last generation's counters, then the final detach; the sandbox takes the rest down.
        const auto d = sb.detach();
        CHECK_MESSAGE(d.exit_code == 0, d.err);
        CHECK(sockops_attached(sb.cgroup.path()).empty());
    }
    const auto counters = gens.sum();
    const size_t generations = gens.count();
    gens.release();
    const auto left = leftover_ours(ids_before);

    REQUIRE_MESSAGE(result.rfind("result ", 0) == 0, result);
    const auto times = result.substr(result.find("\ntimes") + 1);
    const auto e = classify(times, c.log, true);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

    MESSAGE("connections " << report_field(result, "conns") << "/" << kConnections << " (" << v6 << " IPv6, " << epolls
                           << " epoll server, " << sendfiles << " sendfile directions, " << peeks
                           << " FIONREAD+MSG_PEEK receivers), at most " << report_field(result, "max_live")
                           << " at once; bytes verified up " << report_field(result, "up") << " + down "
                           << report_field(result, "down") << " of " << planned << " planned");
    MESSAGE("established while attached " << e.while_attached << ", while detached " << e.while_detached
                                          << ", straddling a transition " << e.straddling);
    MESSAGE("transitions: " << c.detaches << " detaches, " << c.attaches << " attaches, " << c.killed_attaches
                            << " killed attaches, " << c.killed_detaches << " killed detaches (" << c.steps_killed
                            << "); " << generations << " generations of maps");
    MESSAGE("counters over all generations: sockets added "
            << counters[SOCKREDIR_SOCKETS_ADDED] << ", insert failed " << counters[SOCKREDIR_INSERT_FAILED]
            << ", messages redirected " << counters[SOCKREDIR_MSG_REDIRECTED] << " ("
            << counters[SOCKREDIR_BYTES_REDIRECTED] << " bytes), messages passed to TCP "
            << counters[SOCKREDIR_MSG_PASSED]);
    MESSAGE("blocking recv() calls that returned EAGAIN (kernel tcp_bpf_recvmsg, retried): " << report_field(result,
                                                                                                             "eagain"));
    MESSAGE("wall time " << seconds << " s");

    INFO(result.substr(0, result.find("\ntimes")));
    CHECK(report_field(result, "errors") == "0");
    CHECK(report_field(result, "conns") == std::to_string(kConnections));
    CHECK(std::stoull(report_field(result, "up")) + std::stoull(report_field(result, "down")) == planned);
    for (const auto& err : c.errors)
        CHECK_MESSAGE(false, err);
    CHECK(c.killed_attaches >= 3);
    CHECK(c.detaches >= 5);
    CHECK(e.while_attached > 0);
    CHECK(e.while_detached > 0);
    CHECK(e.straddling > 0);
    // Both paths carried data: redirected bytes, and messages that a draining or raced socket sent by TCP.
    CHECK(counters[SOCKREDIR_BYTES_REDIRECTED] > 0);
    CHECK(counters[SOCKREDIR_MSG_PASSED] > 0);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}
