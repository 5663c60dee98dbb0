// Scenarios: how connections are set up. TCP_DEFER_ACCEPT, TCP Fast Open (MSG_FASTOPEN and TCP_FASTOPEN_CONNECT),
// IPv6 on ::1, a v4 client to a dual-stack v6 listener, and data sent before the server accepts. On non-blocking
// sockets, as event-driven clients and servers set connections up; each story ends with an exchange that sockredir
// redirects once both ends have read.
#include "tests/conform/scen_helpers.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

using namespace conform;
using namespace conform::helpers;

std::string family_name(sa_family_t family)
{
    switch (family) {
    case AF_INET:
        return "AF_INET";
    case AF_INET6:
        return "AF_INET6";
    default:
        return "family " + std::to_string(family);
    }
}

// The address family of a socket's own (or its peer's) address, and whether that address is loopback: 127.0.0.1,
// ::1, or ::ffff:127.0.0.1 (an IPv4 peer of a dual-stack socket), named as such.
std::string address_kind(int fd, bool peer)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                 : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    if (r < 0) {
        return errno_name(errno);
    }
    std::string kind = family_name(ss.ss_family);
    if (ss.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
        kind += in->sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? " 127.0.0.1" : " other";
    } else if (ss.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            kind += " ::1";
        } else if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                   std::memcmp(&in6->sin6_addr.s6_addr[12], "\x7f\x00\x00\x01", 4) == 0) {
            kind += " ::ffff:127.0.0.1";
        } else {
            kind += " other";
        }
    }
    return kind;
}

// Both directions of one connection, 256 KiB each way, every byte checked.
void both_ways(Obs& obs, const Pair& pair, uint32_t seed)
{
    constexpr size_t total = 256 * kKiB;
    const int client = pair.client.get();
    const int server = pair.server.get();
    Sent sent;
    {
        Thread sender([&] { sent = send_stream(client, seed, 0, total, 16 * kKiB, 5000); },
                      [client] { ::shutdown(client, SHUT_RDWR); });
        note_read(obs, "client to server", read_stream(server, seed, 0, total, 5000));
    }
    note_sent(obs, "client sent", sent);
    {
        Thread sender([&] { sent = send_stream(server, seed + 1, 0, total, 16 * kKiB, 5000); },
                      [server] { ::shutdown(server, SHUT_RDWR); });
        note_read(obs, "server to client", read_stream(client, seed + 1, 0, total, 5000));
    }
    note_sent(obs, "server sent", sent);
}

// A listener on 127.0.0.1 with TCP_FASTOPEN (the server side of TFO; whether the kernel lets SYNs carry data is the
// netns's net.ipv4.tcp_fastopen, which this does not touch: the data must arrive either way).
Fd fastopen_listener(Obs& obs, sockaddr_in* addr)
{
    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener) {
        throw std::runtime_error("socket: " + errno_name(errno));
    }
    int qlen = 16;
    obs.ret("setsockopt(TCP_FASTOPEN, 16)", ::setsockopt(listener.get(), SOL_TCP, TCP_FASTOPEN, &qlen, sizeof qlen));
    *addr = {};
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *addr;
    addr->sin_port = htons(next_port());
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(addr), sizeof *addr) != 0 ||
        ::listen(listener.get(), 16) != 0 ||
        ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(addr), &len) != 0) {
        throw std::runtime_error("fast open listener: " + errno_name(errno));
    }
    return listener;
}

// A non-blocking fast open client's first write of the 1000 bytes of `seed`: `first` is what the call that starts the
// connection returned. With the server's cookie in the client's cache the data rides on the SYN and the call takes
// it; without (the first connection of the namespace to 127.0.0.1) it says EINPROGRESS and takes nothing. Which of
// the two depends on what ran before in the namespace, so only "one or the other" is recorded; the rest of the
// 1000 bytes goes once the connection is up.
void fastopen_first_write(Obs& obs, const std::string& what, const Fd& client, long long first, uint32_t seed)
{
    const int e = errno;
    const bool ok = first > 0 || (first < 0 && e == EINPROGRESS);
    obs.note(what, ok ? "taken, or EINPROGRESS" : first == 0 ? "0" : errno_name(e));
    if (!ok) {
        return;
    }
    const size_t done = first > 0 ? static_cast<size_t>(first) : 0;
    obs.flag("connected", wait_writable(client.get(), 2000));
    obs.note("the rest of the 1000 sent", send_stream(client.get(), seed, done, 1000 - done, 1000, 2000).end);
}

// The server side of a fast open story: accept, read the client's 1000 bytes, answer 1000, the client reads them;
// then a request and its answer, which sockredir redirects.
void fastopen_exchange(Obs& obs, const Fd& listener, const Fd& client, uint32_t seed)
{
    obs.flag("listener readable", wait_readable(listener.get(), 2000));
    Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    obs.flag("accepted", static_cast<bool>(server));
    if (!server) {
        return;
    }
    note_read(obs, "server", read_stream(server.get(), seed, 0, 1000, 2000));
    note_sent(obs, "server answers 1000", send_stream(server.get(), seed + 1, 0, 1000, 1000, 2000));
    note_read(obs, "client", read_stream(client.get(), seed + 1, 0, 1000, 2000));
    exchange(obs, client.get(), server.get(), seed + 2);
}

} // namespace

CONFORM_SCENARIO(defer_accept, "connection setup", "TCP_DEFER_ACCEPT: accept() only once the client has sent data")
{
    PairOptions options = nonblocking();
    options.on_listener = [](int fd) {
        int seconds = 5;
        ::setsockopt(fd, SOL_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds);
    };
    options.accept = false;
    Pair pair = make_pair(options);
    const uint32_t seed = 701;
    set_nonblock(pair.listener.get(), true);
    // The client is connected; the listener holds the connection back until data comes (5 s at most).
    sleep_ms(200);
    {
        Fd early(::accept4(pair.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        obs.note("accept before data", early ? std::string("accepted") : errno_name(errno));
    }
    obs.ret("client sends 1000", send_pattern(pair.client.get(), seed, 0, 1000));
    obs.flag("listener readable after data", wait_readable(pair.listener.get(), 2000));
    Fd server(::accept4(pair.listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    obs.note("accept after data", server ? std::string("accepted") : errno_name(errno));
    if (server) {
        note_read(obs, "server", read_stream(server.get(), seed, 0, 1000, 2000));
        note_sent(obs, "server answers", send_stream(server.get(), seed + 1, 0, 100, 100, 2000));
        note_read(obs, "client reads the answer", read_stream(pair.client.get(), seed + 1, 0, 100, 2000));
        exchange(obs, pair.client.get(), server.get(), seed + 2);
    }
}

CONFORM_SCENARIO(fastopen_sendto, "connection setup", "TCP Fast Open with sendto(MSG_FASTOPEN): the data arrives")
{
    sockaddr_in addr{};
    Fd listener = fastopen_listener(obs, &addr);
    const uint32_t seed = 702;
    Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    unsigned char data[1000];
    pattern(seed, 0, data, sizeof data);
    const long long r = ::sendto(client.get(), data, sizeof data, MSG_FASTOPEN | MSG_NOSIGNAL,
                                 reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    fastopen_first_write(obs, "sendto(MSG_FASTOPEN) 1000", client, r, seed);
    fastopen_exchange(obs, listener, client, seed);
}

CONFORM_SCENARIO(fastopen_connect, "connection setup", "TCP Fast Open with TCP_FASTOPEN_CONNECT: the data arrives")
{
    sockaddr_in addr{};
    Fd listener = fastopen_listener(obs, &addr);
    const uint32_t seed = 703;
    Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int on = 1;
    obs.ret("setsockopt(TCP_FASTOPEN_CONNECT)",
            ::setsockopt(client.get(), SOL_TCP, TCP_FASTOPEN_CONNECT, &on, sizeof on));
    // The connection starts with the first write: connect() returns at once, even on a non-blocking socket.
    obs.ret("connect", ::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr));
    unsigned char data[1000];
    pattern(seed, 0, data, sizeof data);
    const long long r = ::send(client.get(), data, sizeof data, MSG_NOSIGNAL);
    fastopen_first_write(obs, "send 1000", client, r, seed);
    fastopen_exchange(obs, listener, client, seed);
}

CONFORM_SCENARIO(ipv6_loopback, "connection setup", "IPv6 on ::1: both directions, every byte")
{
    Pair pair = make_pair(nonblocking(Family::v6));
    obs.note("server address", address_kind(pair.server.get(), false));
    obs.note("server's peer", address_kind(pair.server.get(), true));
    both_ways(obs, pair, 704);
}

CONFORM_SCENARIO(dual_stack, "connection setup", "A v4 client to a dual-stack v6 listener: both directions")
{
    Pair pair = make_pair(nonblocking(Family::dual));
    obs.note("client address", address_kind(pair.client.get(), false));
    obs.note("server address", address_kind(pair.server.get(), false));
    obs.note("server's peer", address_kind(pair.server.get(), true));
    both_ways(obs, pair, 705);
}

CONFORM_SCENARIO(data_before_accept, "connection setup",
                 "Data sent before accept(): the server accepts later and reads every byte, then EOF")
{
    PairOptions options = nonblocking();
    options.accept = false;
    Pair pair = make_pair(options);
    const uint32_t seed = 706;
    constexpr size_t total = 64 * kKiB;
    const int client = pair.client.get();
    Sent sent;
    std::atomic<bool> done{false};
    Thread sender(
        [&] {
            sent = send_stream(client, seed, 0, total, 4 * kKiB, 2000);
            ::shutdown(client, SHUT_WR);
            done.store(true);
        },
        [client] { ::shutdown(client, SHUT_RDWR); });
    obs.flag("listener readable", wait_readable(pair.listener.get(), 2000));
    // Give the sender time to finish while nobody has accepted (64 KiB fits in the buffers); not recorded.
    Deadline deadline(2000);
    while (!done.load() && !deadline.passed()) {
        sleep_ms(10);
    }
    pair.accept_now(options);
    obs.flag("accepted", static_cast<bool>(pair.server));
    if (pair.server) {
        note_read(obs, "server", read_stream(pair.server.get(), seed, 0, total, 5000, true));
    }
    sender.join();
    note_sent(obs, "client sent", sent);
    if (pair.server) {
        // The answer to the upload, in two parts: the second one finds the client proven a reader (redirected).
        for (int part = 0; part < 2; ++part) {
            note_sent(obs, "server answers", send_stream(pair.server.get(), seed + 1, part * 100, 100, 100, 2000));
            note_read(obs, "client reads", read_stream(client, seed + 1, part * 100, 100, 2000));
        }
    }
}

CONFORM_SCENARIO(port_after_blocking_client, "connection setup",
                 "An event-driven client of a port that a connect-then-block client (hiredis) used before")
{
    // First a client as hiredis's blocking context makes it (redis-cli, redis-benchmark's first connection):
    // O_NONBLOCK for connect(), then a blocking request and a blocking read of the answer.
    PairOptions options = nonblocking();
    options.warm_up = false;
    Pair first = make_pair(options);
    const uint32_t seed = 707;
    set_nonblock(first.client.get(), false);
    note_sent(obs, "blocking client's request", send_stream(first.client.get(), seed, 0, 100, 100, 2000));
    note_read(obs, "server reads it", read_stream(first.server.get(), seed, 0, 100, 2000));
    note_sent(obs, "server answers", send_stream(first.server.get(), seed + 1, 0, 100, 100, 2000));
    {
        bool intact = false;
        obs.note("blocking client reads the answer", recv_pattern(first.client.get(), seed + 1, 0, 100, &intact, 2000));
        obs.flag("answer intact", intact);
    }
    first.client.close();
    first.server.close();

    // Then an event-driven client of the same listener: non-blocking connect, a byte each way, an exchange.
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(first.listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::runtime_error("getsockname: " + errno_name(errno));
    }
    Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    const int r = ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len);
    obs.note("second client's connect", r == 0 || errno == EINPROGRESS ? "in progress or done" : errno_name(errno));
    obs.flag("connected", wait_writable(client.get(), 2000));
    first.accept_now(options);
    warm_up_read_write(client.get(), first.server.get());
    exchange(obs, client.get(), first.server.get(), seed + 2);
}
