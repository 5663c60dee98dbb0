// The data path keeps TCP's promises: a reader that stops holds its sender back, a blocking reader is taken off
// the map (and its server port remembered), a reader that only splices is never redirected to, and one that sets a
// reading option leaves redirection when it sets it.
#include <fcntl.h>
#include <linux/tcp.h> // struct tcp_info with the byte counters (glibc's <netinet/tcp.h> has not)
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/status.hpp"

using namespace e2e;
using sockredir::base::Fd;

namespace {

constexpr uint64_t kInflight = 1ULL << 20; // --max-inflight of these tests
constexpr uint64_t kCap = 64ULL << 20;     // a sender never held back stops here: the host's memory is shared

Fd accept_nonblocking(int listener)
{
    Fd s(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!s)
        throw_errno("accept4");
    return s;
}

// A non-blocking client and server, as an event loop has them.
struct EventPair {
    Fd listener, client, server;
};

EventPair event_pair()
{
    EventPair p;
    p.listener = listen_on(AF_INET, "127.0.0.1", 0);
    p.client = connect_to(AF_INET, "127.0.0.1", local_port(p.listener.get()));
    p.server = accept_nonblocking(p.listener.get());
    set_nonblocking(p.client.get(), true);
    return p;
}

// One byte each way, read by non-blocking reads: both readers proven, so that the next bytes each way are redirected.
// `what` names the exchange in the error ("warm-up").
void exchange_byte(EventPair& p, const char* what)
{
    uint8_t b = 'w';
    send_all(p.client.get(), &b, 1);
    if (recv_blocking(p.server.get(), &b, 1) != 1)
        throw std::runtime_error(what);
    send_all(p.server.get(), &b, 1);
    if (recv_blocking(p.client.get(), &b, 1) != 1)
        throw std::runtime_error(std::string(what) + ", the answer");
}

// A non-blocking sender writes `chunk`-byte writes of the pattern until EAGAIN (or kCap); returns the bytes sent.
uint64_t send_until_eagain(int fd, size_t chunk)
{
    std::vector<unsigned char> buf(chunk);
    uint64_t sent = 0;
    while (sent < kCap) {
        fill_pattern(7, sent, buf.data(), chunk);
        const ssize_t n = ::send(fd, buf.data(), chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            throw_errno("send");
        sent += static_cast<uint64_t>(n);
        if (static_cast<size_t>(n) < chunk)
            break; // the next write would see EAGAIN; the stream goes on from `sent`
    }
    return sent;
}

// Reads `bytes` of the pattern from stream offset `from` (non-blocking, poll), every byte checked.
void drain_checked_from(int fd, uint64_t from, uint64_t bytes)
{
    std::vector<unsigned char> buf(256 * 1024), want(256 * 1024);
    for (uint64_t got = 0; got < bytes;) {
        const ssize_t n = recv_blocking(fd, buf.data(), std::min<uint64_t>(buf.size(), bytes - got));
        if (n <= 0)
            throw std::runtime_error("drain: recv ended after " + std::to_string(got) + " of " +
                                     std::to_string(bytes));
        fill_pattern(7, from + got, want.data(), static_cast<size_t>(n));
        if (std::memcmp(buf.data(), want.data(), static_cast<size_t>(n)) != 0)
            throw std::runtime_error("drain: wrong byte after stream offset " + std::to_string(got));
        got += static_cast<uint64_t>(n);
    }
}

void drain_checked(int fd, uint64_t bytes)
{
    drain_checked_from(fd, 0, bytes);
}

std::atomic<uint64_t> g_signals{0};
void on_alarm(int)
{
    ++g_signals;
}

// A 0.7 ms SA_RESTART interval timer: what a profiler, a timer or a SIGCHLD-heavy parent gives a reader.
void start_timer()
{
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
    itimerval t{{0, 700}, {0, 700}};
    ::setitimer(ITIMER_REAL, &t, nullptr);
}

void stop_timer()
{
    itimerval t{};
    ::setitimer(ITIMER_REAL, &t, nullptr);
}

sockredir::app::Status attach_and_run(Sandbox& sb, const std::function<std::string()>& story, std::string& report,
                                      bool adaptive = true)
{
    auto args = sb.attach_args();
    args.insert(args.end(), {"--max-inflight", std::to_string(kInflight)});
    if (!adaptive)
        args.emplace_back("--no-adaptive");
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    Child child = spawn([cgroup = sb.cgroup.path(), &story](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        ch.send(story());
        return 0;
    });
    report = child.channel().receive(60000);
    CHECK(child.wait() == 0);
    return sockredir::app::read_status(sb.pin_dir());
}

} // namespace

TEST_CASE("a reader that stops reading holds a redirected sender back within --max-inflight, and nothing is lost")
{
    E2E_REQUIRE_KERNEL();
    for (const size_t chunk : {size_t{65536}, size_t{1}}) {
        CAPTURE(chunk);
        Sandbox sb;
        std::string report;
        const auto status = attach_and_run(
            sb,
            [chunk] {
                auto p = event_pair();
                exchange_byte(p, "warm-up");
                const uint64_t sent = send_until_eagain(p.client.get(), chunk);
                drain_checked(p.server.get(), sent);
                return "ok sent=" + std::to_string(sent);
            },
            // A flood of writes nobody answers is what the adaptive path moves to TCP first: held back here by
            // --max-inflight alone.
            report, false);
        MESSAGE("chunk " << chunk << ": " << report << ", redirected " << counter(status, SOCKREDIR_BYTES_REDIRECTED)
                         << " bytes in " << counter(status, SOCKREDIR_MSG_REDIRECTED) << " messages, held back "
                         << counter(status, SOCKREDIR_PASS_HELD) << " messages");
        REQUIRE(report.rfind("ok sent=", 0) == 0);
        const uint64_t sent = std::stoull(report_field(report, "sent"));
        // Held back: the sender met EAGAIN well before the cap, about where TCP would (a window plus the flight).
        CHECK(sent < 16ULL << 20);
        // The flight itself stayed within the bound, each message counted with its kernel memory.
        CHECK(counter(status, SOCKREDIR_MSG_REDIRECTED) > 0);
        CHECK(counter(status, SOCKREDIR_BYTES_REDIRECTED) +
                  counter(status, SOCKREDIR_MSG_REDIRECTED) * SOCKREDIR_MSG_COST <=
              kInflight);
        CHECK(counter(status, SOCKREDIR_PASS_HELD) > 0);
    }
}

TEST_CASE("a blocking reader is taken off the map: after its first read it sees no EAGAIN, and its port is learned")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    std::string report;
    const auto status = attach_and_run(
        sb,
        [] {
            Fd listener = listen_on(AF_INET, "127.0.0.1", 0);
            const uint16_t port = local_port(listener.get());
            // EAGAINs of the reads of round 0 while the connection may still be in the map (the first two reads:
            // the socket leaves it on the first segment it sends after its first read, its ACK of the second
            // message), of its later reads, and of round 1 (the learned port: never in the map).
            uint64_t eagain_first_two = 0, eagain_later = 0, eagain_learned = 0, bytes = 0;
            for (int round = 0; round < 2; ++round) {
                // An event-driven client, a blocking server that takes timer signals (a Python server, say).
                Fd c = connect_to(AF_INET, "127.0.0.1", port);
                set_nonblocking(c.get(), true);
                Fd s(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
                if (!s)
                    throw_errno("accept4");
                std::thread sender([&c] {
                    for (int i = 0; i < 60; ++i) {
                        std::this_thread::sleep_for(std::chrono::milliseconds(3));
                        const unsigned char b[100] = {static_cast<unsigned char>(i)};
                        pollfd p{c.get(), POLLOUT, 0};
                        ::poll(&p, 1, 1000);
                        if (::send(c.get(), b, sizeof b, MSG_NOSIGNAL) != sizeof b)
                            return;
                    }
                });
                start_timer();
                unsigned char buf[100];
                uint64_t got = 0;
                int reads = 0;
                while (got < 6000) {
                    const ssize_t n = ::recv(s.get(), buf, sizeof buf - got % 100, 0);
                    if (n < 0 && errno == EAGAIN) {
                        ++(round == 1 ? eagain_learned : reads < 2 ? eagain_first_two : eagain_later);
                        continue;
                    }
                    if (n <= 0)
                        break;
                    ++reads;
                    got += static_cast<uint64_t>(n);
                }
                stop_timer();
                sender.join();
                bytes += got;
            }
            return "ok bytes=" + std::to_string(bytes) + " eagain_first_two=" + std::to_string(eagain_first_two) +
                   " eagain_later=" + std::to_string(eagain_later) + " eagain_learned=" +
                   std::to_string(eagain_learned) + " signals=" + std::to_string(g_signals.load());
        },
        report);
    MESSAGE(report << "; reader_blocking " << counter(status, SOCKREDIR_READER_BLOCKING) << ", evicted "
                   << counter(status, SOCKREDIR_SOCKETS_EVICTED) << ", skipped (learned) "
                   << counter(status, SOCKREDIR_SKIPPED_LEARNED) << ", blocking_read_eagain "
                   << counter(status, SOCKREDIR_EAGAIN_SEEN));
    CHECK(report_field(report, "bytes") == "12000");
    CHECK(std::stoull(report_field(report, "signals")) > 50); // the timer did fire through the reads
    // The residue the kernel leaves (README, Compatibility): EAGAIN is possible in the first two reads only.
    CHECK(report_field(report, "eagain_later") == "0");
    CHECK(report_field(report, "eagain_learned") == "0");
    CHECK(counter(status, SOCKREDIR_READER_BLOCKING) == 1);
    CHECK(counter(status, SOCKREDIR_SOCKETS_EVICTED) == 2);
    // The second connection to that server port never entered the map.
    CHECK(counter(status, SOCKREDIR_SKIPPED_LEARNED) == 1);
    CHECK(counter(status, SOCKREDIR_MSG_REDIRECTED) == 0);
}

TEST_CASE("a reader that only splices is never redirected to, and gets every byte")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    std::string report;
    const auto status = attach_and_run(
        sb,
        [] {
            auto p = event_pair();
            set_nonblocking(p.client.get(), false);
            // The server never calls recvmsg: it splices everything into a pipe (what haproxy does with splice).
            int pipefd[2];
            if (::pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
                throw_errno("pipe2");
            Fd r(pipefd[0]), w(pipefd[1]);
            constexpr uint64_t kBytes = 4ULL << 20;
            std::thread sender([&] { send_pattern(p.client.get(), 7, 0, kBytes); });
            uint64_t got = 0;
            std::vector<unsigned char> buf(65536), want(65536);
            bool intact = true;
            while (got < kBytes) {
                pollfd pf{p.server.get(), POLLIN, 0};
                if (::poll(&pf, 1, 5000) != 1)
                    break;
                const ssize_t n = ::splice(p.server.get(), nullptr, w.get(), nullptr, 65536, SPLICE_F_NONBLOCK);
                if (n < 0 && errno == EAGAIN)
                    continue;
                if (n <= 0)
                    break;
                const ssize_t m = ::read(r.get(), buf.data(), static_cast<size_t>(n));
                if (m != n)
                    throw std::runtime_error("pipe read short");
                fill_pattern(7, got, want.data(), static_cast<size_t>(m));
                intact = intact && std::memcmp(buf.data(), want.data(), static_cast<size_t>(m)) == 0;
                got += static_cast<uint64_t>(m);
            }
            sender.join();
            return "ok got=" + std::to_string(got) + " intact=" + (intact ? std::string("yes") : "no");
        },
        report);
    MESSAGE(report << "; redirected " << counter(status, SOCKREDIR_MSG_REDIRECTED) << " messages, unproven "
                   << counter(status, SOCKREDIR_PASS_UNPROVEN));
    CHECK(report_field(report, "got") == std::to_string(4ULL << 20));
    CHECK(report_field(report, "intact") == "yes");
    CHECK(counter(status, SOCKREDIR_MSG_REDIRECTED) == 0);
    CHECK(counter(status, SOCKREDIR_PASS_UNPROVEN) > 0);
}

TEST_CASE("an option that changes how a socket reads takes its connection off redirection at setsockopt, TCP_INFO "
          "counts the redirected bytes, and a listener's low-water mark keeps its connections off the map")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    std::string report;
    const auto status = attach_and_run(
        sb,
        [] {
            auto p = event_pair();
            exchange_byte(p, "warm-up");
            // 64 KiB redirected in 16 writes, read as they come.
            constexpr uint64_t kBytes = 64 * 1024;
            std::vector<unsigned char> chunk(4096);
            for (uint64_t off = 0; off < kBytes; off += chunk.size()) {
                fill_pattern(7, off, chunk.data(), chunk.size());
                send_all(p.client.get(), chunk.data(), chunk.size());
                drain_checked_from(p.server.get(), off, chunk.size());
            }
            tcp_info c{}, s{};
            socklen_t len = sizeof c;
            if (::getsockopt(p.client.get(), IPPROTO_TCP, TCP_INFO, &c, &len) != 0 || len != sizeof c)
                throw_errno("getsockopt(TCP_INFO) of the sender");
            len = sizeof s;
            if (::getsockopt(p.server.get(), IPPROTO_TCP, TCP_INFO, &s, &len) != 0 || len != sizeof s)
                throw_errno("getsockopt(TCP_INFO) of the reader");

            // SO_RCVLOWAT 1000 on the redirected reader: from here its bytes come by TCP, whose poll() waits for
            // the mark.
            const int lowat = 1000;
            if (::setsockopt(p.server.get(), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) != 0)
                throw_errno("setsockopt(SO_RCVLOWAT)");
            std::vector<unsigned char> half(500);
            fill_pattern(7, kBytes, half.data(), half.size());
            send_all(p.client.get(), half.data(), half.size());
            pollfd pf{p.server.get(), POLLIN, 0};
            const int at_500 = ::poll(&pf, 1, 100);
            fill_pattern(7, kBytes + 500, half.data(), half.size());
            send_all(p.client.get(), half.data(), half.size());
            pf.revents = 0;
            const int at_1000 = ::poll(&pf, 1, 2000);
            drain_checked_from(p.server.get(), kBytes, 1000);

            // A listener with a low-water mark: the accepted socket inherits it and stays on TCP.
            Fd listener = listen_on(AF_INET, "127.0.0.1", 0);
            const int two = 2;
            if (::setsockopt(listener.get(), SOL_SOCKET, SO_RCVLOWAT, &two, sizeof two) != 0)
                throw_errno("setsockopt(SO_RCVLOWAT) of the listener");
            Fd c2 = connect_to(AF_INET, "127.0.0.1", local_port(listener.get()));
            Fd s2 = accept_nonblocking(listener.get());
            set_nonblocking(c2.get(), true);
            fill_pattern(7, 0, chunk.data(), chunk.size());
            send_all(c2.get(), chunk.data(), chunk.size());
            drain_checked_from(s2.get(), 0, chunk.size());

            return "ok acked=" + std::to_string(c.tcpi_bytes_acked) + " sent=" + std::to_string(c.tcpi_bytes_sent) +
                   " segs_out=" + std::to_string(c.tcpi_segs_out) + " received=" +
                   std::to_string(s.tcpi_bytes_received) + " segs_in=" + std::to_string(s.tcpi_segs_in) +
                   " at_500=" + std::to_string(at_500) + " at_1000=" + std::to_string(at_1000);
        },
        report);
    MESSAGE(report << "; redirected " << counter(status, SOCKREDIR_BYTES_REDIRECTED) << " bytes in "
                   << counter(status, SOCKREDIR_MSG_REDIRECTED) << " messages, reader_lowat "
                   << counter(status, SOCKREDIR_READER_LOWAT) << ", skipped_reader_options "
                   << counter(status, SOCKREDIR_SKIPPED_OPTIONS) << ", passed_incompatible "
                   << counter(status, SOCKREDIR_PASS_INCOMPATIBLE));
    REQUIRE(report.rfind("ok ", 0) == 0);
    // The 64 KiB went by redirection, past TCP's counters: TCP_INFO has them all the same.
    CHECK(counter(status, SOCKREDIR_BYTES_REDIRECTED) >= 64 * 1024);
    CHECK(std::stoull(report_field(report, "acked")) >= 64 * 1024);
    CHECK(std::stoull(report_field(report, "sent")) >= 64 * 1024);
    CHECK(std::stoull(report_field(report, "received")) >= 64 * 1024);
    CHECK(std::stoull(report_field(report, "segs_out")) >= 16);
    CHECK(std::stoull(report_field(report, "segs_in")) >= 16);
    // The low-water mark held as on TCP: 500 bytes are not readable, 1000 are.
    CHECK(report_field(report, "at_500") == "0");
    CHECK(report_field(report, "at_1000") == "1");
    CHECK(counter(status, SOCKREDIR_READER_LOWAT) == 1);
    CHECK(counter(status, SOCKREDIR_PASS_INCOMPATIBLE) >= 1);
    // Of the listener's connection, its server's end never entered the map.
    CHECK(counter(status, SOCKREDIR_SKIPPED_OPTIONS) == 1);
}

TEST_CASE("a stream of small writes moves to TCP for good and leaves the map, request/response stays redirected, "
          "and --no-adaptive keeps the stream redirected")
{
    E2E_REQUIRE_KERNEL();
    // One connection streams 4 MiB in 4 KiB writes that nobody answers, another exchanges 2000 requests and answers
    // of 4 KiB; every byte checked.
    const auto story = [] {
        constexpr uint64_t kStream = 4ULL << 20;
        constexpr size_t kWrite = 4096;
        auto p = event_pair();
        exchange_byte(p, "warm-up");
        std::thread reader([&p] { drain_checked(p.server.get(), kStream); });
        std::vector<unsigned char> buf(kWrite);
        for (uint64_t off = 0; off < kStream; off += kWrite) {
            fill_pattern(7, off, buf.data(), kWrite);
            send_all(p.client.get(), buf.data(), kWrite);
        }
        reader.join();

        auto q = event_pair();
        for (uint64_t i = 0; i < 2000; ++i) {
            fill_pattern(7, i * kWrite, buf.data(), kWrite);
            send_all(q.client.get(), buf.data(), kWrite);
            drain_checked_from(q.server.get(), i * kWrite, kWrite);
            send_all(q.server.get(), buf.data(), kWrite);
            drain_checked_from(q.client.get(), i * kWrite, kWrite);
        }
        // Both sockets of the stream leave the map on the next segment each sends, 50 ms after the move.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        exchange_byte(p, "after the stream");
        return std::string("ok");
    };
    for (const bool adaptive : {true, false}) {
        CAPTURE(adaptive);
        Sandbox sb;
        std::string report;
        const auto status = attach_and_run(sb, story, report, adaptive);
        MESSAGE(std::string(adaptive ? "adaptive" : "--no-adaptive")
                << ": " << report << "; redirected " << counter(status, SOCKREDIR_MSG_REDIRECTED) << " messages, "
                << counter(status, SOCKREDIR_BYTES_REDIRECTED) << " bytes; demoted "
                << counter(status, SOCKREDIR_DEMOTED) << ", passed_demoted " << counter(status, SOCKREDIR_PASS_DEMOTED)
                << ", evicted " << counter(status, SOCKREDIR_SOCKETS_EVICTED));
        REQUIRE(report == "ok");
        // The request/response connection: every request and answer redirected (4000 messages of 4 KiB).
        CHECK(counter(status, SOCKREDIR_BYTES_REDIRECTED) >= 4000 * 4096);
        if (adaptive) {
            CHECK(counter(status, SOCKREDIR_DEMOTED) == 1);
            // The stream: its first 64 writes redirected, then TCP for good, and out of the map (the writer at
            // once, nothing having been redirected to it; its reader 50 ms later), so that the rest of its writes
            // do not even run the sk_msg program.
            CHECK(counter(status, SOCKREDIR_BYTES_REDIRECTED) < 4000 * 4096 + (1ULL << 20));
            CHECK(counter(status, SOCKREDIR_PASS_DEMOTED) >= 1);
            CHECK(counter(status, SOCKREDIR_SOCKETS_EVICTED) == 2);
        } else {
            CHECK(counter(status, SOCKREDIR_DEMOTED) == 0);
            CHECK(counter(status, SOCKREDIR_PASS_DEMOTED) == 0);
            // More of the stream than the 64 writes the adaptive path redirects (how much more, flow control
            // decides: these tests hold a sender back at 1 MiB unread).
            CHECK(counter(status, SOCKREDIR_BYTES_REDIRECTED) > 4000 * 4096 + 4 * 64 * 4096);
        }
    }
}
