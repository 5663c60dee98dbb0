// Scenarios: readiness. poll, select and epoll (level- and edge-triggered) before and after data, after a partial
// read, on a half-close (EPOLLRDHUP) and once both directions are shut (POLLHUP). On non-blocking sockets, as the
// event loops that ask these questions use them.
#include "tests/conform/scen_helpers.hpp"

#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <string>

namespace {

using namespace conform;
using namespace conform::helpers;

// select() for reading and writing on one descriptor: "r", "w", "rw", "none", or the errno name.
std::string select_once(int fd, int timeout_ms)
{
    fd_set readable;
    fd_set writable;
    FD_ZERO(&readable);
    FD_ZERO(&writable);
    FD_SET(fd, &readable);
    FD_SET(fd, &writable);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int r = ::select(fd + 1, &readable, &writable, nullptr, &tv);
    if (r < 0) {
        return errno_name(errno);
    }
    std::string s;
    s += FD_ISSET(fd, &readable) ? "r" : "";
    s += FD_ISSET(fd, &writable) ? "w" : "";
    return s.empty() ? "none" : s;
}

// select() for reading only, waiting up to timeout_ms: "r" or "none".
std::string select_readable(int fd, int timeout_ms)
{
    fd_set readable;
    FD_ZERO(&readable);
    FD_SET(fd, &readable);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int r = ::select(fd + 1, &readable, nullptr, nullptr, &tv);
    if (r < 0) {
        return errno_name(errno);
    }
    return FD_ISSET(fd, &readable) ? "r" : "none";
}

// One epoll instance watching one descriptor.
class Epoll {
public:
    Epoll(int fd, unsigned events) : ep_(::epoll_create1(EPOLL_CLOEXEC))
    {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        ok_ = ep_ && ::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    }
    bool ok() const { return ok_; }
    // The events of one epoll_wait() (poll_names; "none" when it timed out), or the errno name.
    std::string wait(int timeout_ms) const
    {
        epoll_event ev{};
        int r = ::epoll_wait(ep_.get(), &ev, 1, timeout_ms);
        if (r < 0) {
            return errno_name(errno);
        }
        return r == 0 ? "none" : poll_names(ev.events);
    }
    // Waits up to timeout_ms for an event that has all of `bits` (level-triggered: earlier events come back at once).
    std::string wait_for(unsigned bits, int timeout_ms) const
    {
        Deadline deadline(timeout_ms);
        for (;;) {
            epoll_event ev{};
            int r = ::epoll_wait(ep_.get(), &ev, 1, std::min(deadline.left_ms(), 50));
            if (r < 0) {
                return errno_name(errno);
            }
            if (r == 1 && (ev.events & bits) == bits) {
                return poll_names(ev.events);
            }
            if (deadline.passed()) {
                return "timeout";
            }
            if (r == 1) {
                sleep_ms(10);
            }
        }
    }

private:
    Fd ep_;
    bool ok_ = false;
};

constexpr short kAll = POLLIN | POLLPRI | POLLOUT | POLLRDHUP;

} // namespace

CONFORM_SCENARIO(poll_readiness, "readiness", "poll: POLLIN only with unread data, POLLOUT when writable")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 301;
    const int server = pair.server.get();
    obs.note("reader before data", poll_once(server, kAll, 0));
    obs.note("writer", poll_once(pair.client.get(), kAll, 0));
    obs.ret("send 100", send_pattern(pair.client.get(), seed, 0, 100));
    obs.note("reader waits for data", poll_once(server, POLLIN | POLLRDHUP, 2000));
    obs.note("reader with data", poll_once(server, kAll, 0));
    note_read(obs, "read 40", read_stream(server, seed, 0, 40, 2000));
    obs.note("reader after a partial read", poll_once(server, kAll, 0));
    note_read(obs, "read 60", read_stream(server, seed, 40, 60, 2000));
    obs.note("reader after reading all", poll_once(server, kAll, 0));
}

CONFORM_SCENARIO(select_readiness, "readiness", "select: readable only with unread data, writable when writable")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 302;
    const int server = pair.server.get();
    obs.note("reader before data", select_once(server, 0));
    obs.note("writer", select_once(pair.client.get(), 0));
    obs.ret("send 100", send_pattern(pair.client.get(), seed, 0, 100));
    obs.note("reader waits for data", select_readable(server, 2000));
    obs.note("reader with data", select_once(server, 0));
    note_read(obs, "read 40", read_stream(server, seed, 0, 40, 2000));
    obs.note("reader after a partial read", select_once(server, 0));
    note_read(obs, "read 60", read_stream(server, seed, 40, 60, 2000));
    obs.note("reader after reading all", select_once(server, 0));
}

CONFORM_SCENARIO(epoll_level_triggered, "readiness", "epoll level-triggered: EPOLLIN while unread data remains")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 303;
    const int server = pair.server.get();
    Epoll ep(server, EPOLLIN | EPOLLOUT);
    obs.flag("epoll set up", ep.ok());
    obs.note("before data", ep.wait(0));
    obs.ret("send 100", send_pattern(pair.client.get(), seed, 0, 100));
    obs.note("waits for data", ep.wait_for(EPOLLIN, 2000));
    obs.note("again without reading", ep.wait(0));
    note_read(obs, "read 40", read_stream(server, seed, 0, 40, 2000));
    obs.note("after a partial read", ep.wait(0));
    note_read(obs, "read 60", read_stream(server, seed, 40, 60, 2000));
    obs.note("after reading all", ep.wait(0));
}

CONFORM_SCENARIO(epoll_edge_triggered, "readiness", "epoll edge-triggered: one EPOLLIN per arrival, none on re-wait")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 304;
    const int server = pair.server.get();
    Epoll ep(server, EPOLLIN | EPOLLET);
    obs.flag("epoll set up", ep.ok());
    obs.note("before data", ep.wait(0));
    obs.ret("send 100", send_pattern(pair.client.get(), seed, 0, 100));
    obs.note("waits for data", ep.wait(2000));
    obs.note("again without reading", ep.wait(0));
    note_read(obs, "read 40", read_stream(server, seed, 0, 40, 2000));
    obs.note("after a partial read", ep.wait(0));
    obs.ret("send 50 more", send_pattern(pair.client.get(), seed, 100, 50));
    obs.note("waits for the new data", ep.wait(2000));
    obs.note("again without reading", ep.wait(0));
    note_read(obs, "read 110", read_stream(server, seed, 40, 110, 2000));
    obs.note("after reading all", ep.wait(0));
}

CONFORM_SCENARIO(epoll_rdhup_half_close, "readiness", "epoll: EPOLLRDHUP after the peer's shutdown(SHUT_WR)")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 305;
    const int server = pair.server.get();
    Epoll reader(server, EPOLLIN | EPOLLRDHUP);
    Epoll writer(pair.client.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    obs.flag("epoll set up", reader.ok() && writer.ok());
    obs.note("reader before", reader.wait(0));
    obs.ret("send 10", send_pattern(pair.client.get(), seed, 0, 10));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(pair.client.get(), SHUT_WR));
    obs.note("reader waits for the half-close", reader.wait_for(EPOLLIN | EPOLLRDHUP, 2000));
    note_read(obs, "reader", read_stream(server, seed, 0, 10, 2000, true));
    obs.note("reader at EOF", reader.wait(0));
    obs.note("half-closed writer", writer.wait(0));
}

CONFORM_SCENARIO(poll_hup_both_shut, "readiness", "poll: POLLRDHUP on a half-close, POLLHUP once both ends shut")
{
    Pair pair = make_pair(nonblocking());
    const int client = pair.client.get();
    const int server = pair.server.get();
    exchange(obs, client, server, 306);
    obs.ret("server shutdown(SHUT_WR)", ::shutdown(server, SHUT_WR));
    obs.note("client waits for the half-close", poll_once(client, POLLRDHUP, 2000));
    obs.note("client after the peer's half-close", poll_once(client, kAll, 0));
    obs.note("server after its own half-close", poll_once(server, kAll, 0));
    obs.ret("client shutdown(SHUT_WR)", ::shutdown(client, SHUT_WR));
    obs.note("client after both shut", poll_once(client, kAll, 0));
    obs.note("server waits for the half-close", poll_once(server, POLLRDHUP, 2000));
    obs.note("server after both shut", poll_once(server, kAll, 0));
    note_read(obs, "client", read_stream(client, 0, 0, 0, 2000, true));
    note_read(obs, "server", read_stream(server, 0, 0, 0, 2000, true));
}
