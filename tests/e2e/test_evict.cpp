// Detach hands connections back to TCP: long-lived connections leave the sockhash once their redirected data is
// read, behave as plain TCP afterwards, lose no byte, and keep none of sockredir's programs or maps alive.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/contract.hpp"
#include "loader/app/embedded.hpp"
#include "loader/app/evict.hpp"
#include "loader/app/status.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/sys.hpp"

using namespace e2e;
namespace sys = sockredir::ebpf::sys;

namespace {

using Clock = std::chrono::steady_clock;

// --- the kernel objects of one attachment ---------------------------------------------------------------------------

// The eviction programs (and the unmap program's map) that detach loaded, not among `before`: none may outlive it.
// Only this branch's detach makes objects of these names.
ObjectIds detach_leftovers(const ObjectIds& before)
{
    ObjectIds left;
    const auto now = snapshot_ids();
    for (auto id : now.progs) {
        if (before.progs.count(id) != 0)
            continue;
        try {
            const std::string name = sys::prog_info(sys::prog_fd_by_id(id).get()).name;
            if (name == SOCKREDIR_PROG_EVICT || name == SOCKREDIR_PROG_UNMAP)
                left.progs.insert(id);
        } catch (const sockredir::base::Error&) {
        }
    }
    for (auto id : now.maps) {
        if (before.maps.count(id) != 0)
            continue;
        try {
            if (std::string(sys::map_info(sys::map_fd_by_id(id).get()).name) == SOCKREDIR_MAP_UNMAP_BATCH)
                left.maps.insert(id);
        } catch (const sockredir::base::Error&) {
        }
    }
    return left;
}

// Those of `ids` the kernel still has. Ids are never reused while the kernel runs (idr_alloc_cyclic).
ObjectIds still_there(const ObjectIds& ids)
{
    const auto now = snapshot_ids();
    ObjectIds left;
    for (auto id : ids.progs)
        if (now.progs.count(id) != 0)
            left.progs.insert(id);
    for (auto id : ids.maps)
        if (now.maps.count(id) != 0)
            left.maps.insert(id);
    return left;
}

// Polls until none of `ids` is left (the kernel frees a psock after an RCU grace period, maps from a workqueue).
ObjectIds wait_gone(const ObjectIds& ids, int timeout_ms = 5000)
{
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto left = still_there(ids);
        if ((left.progs.empty() && left.maps.empty()) || Clock::now() >= deadline)
            return left;
        sleep_ms(20);
    }
}

uint64_t sockets_pinned(const std::string& pin_dir)
{
    return sockredir::app::read_status(pin_dir).sockets;
}

void wait_sockets(const std::string& pin_dir, uint64_t n)
{
    for (int i = 0; i < 200 && sockets_pinned(pin_dir) < n; ++i)
        sleep_ms(10);
    REQUIRE(sockets_pinned(pin_dir) == n);
}

RunResult detach(const Sandbox& sb, unsigned timeout_seconds, const RunOptions& options = {})
{
    return run_bin({"detach", "--pin-dir", sb.pin_dir(), "--drain-timeout", std::to_string(timeout_seconds)}, options);
}

// Which eviction programs this kernel loads, as detach will try them: "sockredir_evict sockredir_unmap", one of
// them, or empty. Loaded here from the embedded object and freed at once.
std::string evict_support()
{
    auto spec = sockredir::app::sockredir_spec(sockredir::app::embedded_object(), {});
    spec = spec.subset(sockredir::app::optional_programs());
    auto c = sockredir::ebpf::create_maps(spec);
    sockredir::ebpf::LoadOptions options;
    options.optional = sockredir::app::optional_programs();
    sockredir::ebpf::load_programs(spec, c, options);
    std::string names;
    for (const auto& p : c.programs)
        names += (names.empty() ? "" : " ") + p.name;
    for (const auto& n : c.not_loaded)
        MESSAGE("this kernel does not load " << n.name << ": " << std::string(n.error.what()));
    return names;
}

// --- the pool of connections, in a child in the cgroup and a private netns ------------------------------------------

// What one direction of one connection does.
enum class Sending {
    None,    // nothing (the other direction only)
    Paced,   // 16 KiB, then 1 ms of rest
    Tight,   // 256 KiB writes back to back
    Trickle, // 256 B every 2 ms: its reader spends its time blocked in recv()
};

struct PoolSpec {
    int connections = 8;
    Sending client_to_server = Sending::Paced;
    Sending server_to_client = Sending::Paced;
    // Connection 0's server reads in a thread that takes a 0.7 ms SA_RESTART interval timer; its client trickles.
    // Before the detach it reads as an event loop does (a blocking reader never stays in the map); once the
    // detach is done it reads with plain blocking recv() calls and counts the EAGAINs it gets: none on plain TCP.
    bool timer_reader = false;
    // Before "ready": the client of connection 0 sends this many bytes that its server does not read until told
    // ("read"); then both directions go on as set above.
    uint64_t unread = 0;
};

// A sender runs at most this far ahead of its reader: the redirect path bounds nothing itself (kernel-notes 2).
constexpr uint64_t kMaxAhead = 8ULL << 20;

struct Stream {
    int fd_out = -1, fd_in = -1;
    uint32_t seed = 0;
    Sending sending = Sending::None;
    std::atomic<uint64_t> sent{0}, received{0};
    std::string error;
};

void send_stream(Stream& s, const std::atomic<bool>& stop)
{
    std::vector<unsigned char> buf(256 * 1024);
    const size_t chunk = s.sending == Sending::Tight ? buf.size() : s.sending == Sending::Paced ? 16384 : 256;
    while (!stop.load()) {
        if (s.sent.load() - s.received.load() > kMaxAhead) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            continue;
        }
        fill_pattern(s.seed, s.sent.load(), buf.data(), chunk);
        send_all(s.fd_out, buf.data(), chunk);
        s.sent += chunk;
        if (s.sending == Sending::Paced)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        else if (s.sending == Sending::Trickle)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ::shutdown(s.fd_out, SHUT_WR);
}

// Phases of the test as the children see them: EAGAINs are counted by the phase their recv() call began in.
enum Phase { kBefore = 0, kDuring = 1, kAfter = 2 };
std::atomic<int> g_phase{kBefore};
std::atomic<uint64_t> g_eagain[3];

void on_alarm(int) {}

// Reads the stream to its end and checks every byte: with poll() and MSG_DONTWAIT, as an event loop does, or, once
// `blocking_after` and the detach is done (kAfter), with plain blocking recv() calls, counting each EAGAIN by the
// phase its call began in (it retries them: no byte is skipped).
void receive_counting(Stream& s, const std::atomic<bool>* hold, bool blocking_after)
{
    std::vector<unsigned char> buf(256 * 1024), expect(256 * 1024);
    for (;;) {
        while (hold != nullptr && hold->load())
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        const int phase = g_phase.load();
        const bool blocking = blocking_after && phase == kAfter;
        if (!blocking) {
            pollfd p{s.fd_in, POLLIN, 0};
            if (::poll(&p, 1, 100) == 0)
                continue; // look at the phase again
        }
        const ssize_t n = ::recv(s.fd_in, buf.data(), buf.size(), blocking ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN && !blocking)
            continue;
        if (n < 0 && errno == EAGAIN) {
            ++g_eagain[phase];
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw_errno("recv");
        if (n == 0)
            return;
        fill_pattern(s.seed, s.received.load(), expect.data(), static_cast<size_t>(n));
        if (std::memcmp(buf.data(), expect.data(), static_cast<size_t>(n)) != 0) {
            size_t at = 0;
            while (buf[at] == expect[at])
                ++at;
            throw std::runtime_error("stream " + std::to_string(s.seed) + ": data differs at offset " +
                                     std::to_string(s.received.load() + at));
        }
        s.received += static_cast<uint64_t>(n);
    }
}

// The child: builds the pool, says "ready", then follows the test's words ("phase N", "read", "stop") and
// answers "stop" with its report: "report ok=1 bytes=N eagain_before=N eagain_during=N eagain_after=N error=...".
int run_pool(const Channel& ch, const std::string& cgroup, const PoolSpec& spec)
{
    // Only the timer reader takes SIGALRM: every other thread is made with it blocked.
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, nullptr);

    enter_cgroup(cgroup);
    enter_private_netns();
    auto listener = listen_on(AF_INET, "127.0.0.1", 0);
    const uint16_t port = local_port(listener.get());
    std::vector<sockredir::base::Fd> clients, servers;
    for (int i = 0; i < spec.connections; ++i) {
        clients.push_back(connect_to(AF_INET, "127.0.0.1", port));
        servers.emplace_back(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!servers.back())
            throw_errno("accept");
        // One byte each way: both readers seen, nothing unread, so both directions are redirected from here on.
        std::thread client_side([fd = clients.back().get()] { warm_up_client(fd); });
        warm_up_server(servers.back().get());
        client_side.join();
    }

    std::vector<std::unique_ptr<Stream>> streams;
    for (int i = 0; i < spec.connections; ++i) {
        for (int dir = 0; dir < 2; ++dir) {
            auto s = std::make_unique<Stream>();
            s->fd_out = dir == 0 ? clients[i].get() : servers[i].get();
            s->fd_in = dir == 0 ? servers[i].get() : clients[i].get();
            s->seed = static_cast<uint32_t>(1000 + i * 2 + dir);
            s->sending = dir == 0 ? spec.client_to_server : spec.server_to_client;
            if (i == 0 && dir == 0 && spec.timer_reader)
                s->sending = Sending::Trickle;
            streams.push_back(std::move(s));
        }
    }
    std::atomic<bool> hold{spec.unread > 0};
    if (spec.unread > 0) {
        // Redirected into connection 0's server, which does not read it yet.
        send_pattern(streams[0]->fd_out, streams[0]->seed, 0, spec.unread);
        streams[0]->sent = spec.unread;
    }

    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string error;
    const auto guard = [&](auto body) {
        return [&, body] {
            try {
                body();
            } catch (const std::exception& e) {
                std::lock_guard lock(mu);
                if (error.empty())
                    error = e.what();
                stop = true;
            }
        };
    };
    std::vector<std::thread> threads;
    for (size_t k = 0; k < streams.size(); ++k) {
        Stream& s = *streams[k];
        const bool timer = k == 0 && spec.timer_reader;
        const bool held = k == 0 && spec.unread > 0;
        threads.emplace_back(guard([&s, &hold, &alarm, timer, held] {
            if (timer) {
                pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
                itimerval t{};
                t.it_interval.tv_usec = 700;
                t.it_value.tv_usec = 700;
                setitimer(ITIMER_REAL, &t, nullptr);
            }
            receive_counting(s, held ? &hold : nullptr, timer);
        }));
        if (s.sending != Sending::None)
            threads.emplace_back(guard([&s, &stop] { send_stream(s, stop); }));
        else
            ::shutdown(s.fd_out, SHUT_WR);
    }
    ch.send("ready");

    for (;;) {
        const auto word = ch.receive(120000);
        if (word.rfind("phase ", 0) == 0) {
            g_phase = std::stoi(word.substr(6));
        } else if (word == "read") {
            hold = false;
        } else if (word.rfind("read after ", 0) == 0) {
            const int ms = std::stoi(word.substr(11));
            threads.emplace_back([&hold, ms] {
                sleep_ms(ms);
                hold = false;
            });
        } else if (word == "stop") {
            break;
        }
    }
    hold = false;
    stop = true;
    for (auto& t : threads)
        t.join();
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    uint64_t bytes = 0;
    for (const auto& s : streams) {
        bytes += s->received.load();
        if (error.empty() && s->received.load() != s->sent.load())
            error = "stream " + std::to_string(s->seed) + ": sent " + std::to_string(s->sent.load()) + ", received " +
                    std::to_string(s->received.load());
    }
    ch.send("report ok=" + std::to_string(error.empty() ? 1 : 0) + " bytes=" + std::to_string(bytes) +
            " eagain_before=" + std::to_string(g_eagain[kBefore].load()) +
            " eagain_during=" + std::to_string(g_eagain[kDuring].load()) +
            " eagain_after=" + std::to_string(g_eagain[kAfter].load()) + " error=" + error);
    return 0;
}

struct PoolReport {
    bool ok = false;
    uint64_t bytes = 0, eagain_before = 0, eagain_during = 0, eagain_after = 0;
    std::string text;
};

PoolReport stop_pool(Child& child)
{
    child.channel().send("stop");
    PoolReport r;
    r.text = child.channel().receive(120000);
    CHECK(child.wait() == 0);
    r.ok = report_field(r.text, "ok") == "1";
    const auto number = [&](const char* name) {
        const auto v = report_field(r.text, name);
        return v.empty() ? 0 : std::stoull(v);
    };
    r.bytes = number("bytes");
    r.eagain_before = number("eagain_before");
    r.eagain_during = number("eagain_during");
    r.eagain_after = number("eagain_after");
    return r;
}

Child start_pool(const Sandbox& sb, const PoolSpec& spec)
{
    Child child = spawn([cgroup = sb.cgroup.path(), spec](const Channel& ch) { return run_pool(ch, cgroup, spec); });
    const auto ready = child.channel().receive(60000);
    REQUIRE_MESSAGE(ready == "ready", ready);
    return child;
}

long ms_since(Clock::time_point t)
{
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

} // namespace

// The pools below stream small writes that nobody answers, which the adaptive path would move to TCP (and out of the
// map) before the detach these tests are about: they attach with --no-adaptive.
namespace {
RunResult attach_not_adaptive(const Sandbox& sb)
{
    auto args = sb.attach_args();
    args.emplace_back("--no-adaptive");
    return run_bin(args);
}
} // namespace

TEST_CASE("a pool of long-lived connections survives detach: out of the map, plain TCP, no byte lost, nothing left")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto a = attach_not_adaptive(sb);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    if (evict_support().empty())
        SKIP_TEST_CASE("this kernel loads neither eviction program (see the messages)");
    const auto ours = pinned_ids(sb.pin_dir());

    PoolSpec spec;
    spec.timer_reader = true;
    Child child = start_pool(sb, spec);
    wait_sockets(sb.pin_dir(), 16);
    // The sockmap's receive path, proven first: the timer reader gets EAGAINs.
    sleep_ms(1000);
    const auto before = sockredir::app::read_status(sb.pin_dir());
    CHECK(counter(before, SOCKREDIR_MSG_REDIRECTED) > 0);

    sockredir::base::Fd socks = sys::obj_get(sb.pin_dir() + "/" SOCKREDIR_MAP_SOCKS);
    const auto before_detach = snapshot_ids();
    child.channel().send("phase 1");
    const auto start = Clock::now();
    const auto d = detach(sb, 5);
    const long took = ms_since(start);
    child.channel().send("phase 2");
    INFO("detach: " << d.out << d.err);
    CHECK(d.exit_code == 0);
    CHECK(d.err.empty());
    CHECK(d.out.find("16 of 16 socket(s) back on TCP") != std::string::npos);
    // The map itself, read through a descriptor taken before the unpin: empty.
    CHECK(sockredir::app::sockets_in_map(socks.get()) == 0);
    socks.reset();

    // With every connection still open and talking: none of the programs or maps is left, nor what detach loaded.
    const auto left = wait_gone(ours);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
    auto loaded = detach_leftovers(before_detach);
    for (int i = 0; i < 100 && !(loaded.progs.empty() && loaded.maps.empty()); ++i) {
        sleep_ms(20); // maps are freed from a workqueue
        loaded = detach_leftovers(before_detach);
    }
    CHECK_MESSAGE(loaded.progs.empty(), describe(loaded));
    CHECK_MESSAGE(loaded.maps.empty(), describe(loaded));
    sleep_ms(1000);
    const auto r = stop_pool(child);
    CHECK_MESSAGE(r.ok, r.text);
    // Out of the map, a blocking reader taking timer signals gets no EAGAIN: plain TCP (in the map, tcp_bpf's
    // wait-once would give it hundreds a second: kernel-notes section 1, the conformance suite).
    CHECK_MESSAGE(r.eagain_after == 0, r.text);
    MESSAGE("pool of 8: detach took " << took << " ms (" << d.out.substr(0, d.out.find('\n')) << "); EAGAIN of the "
                                      << "timer reader: " << r.eagain_before << " before, " << r.eagain_during
                                      << " during, " << r.eagain_after << " after; " << r.bytes << " bytes verified");
}

TEST_CASE("detach with 200 KB redirected and unread on one socket loses nothing and takes it out once it is read")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto a = attach_not_adaptive(sb);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    if (evict_support().empty())
        SKIP_TEST_CASE("this kernel loads neither eviction program (see the messages)");
    const auto ours = pinned_ids(sb.pin_dir());
    PoolSpec spec;
    spec.connections = 1;
    spec.unread = 200 * 1000;
    spec.client_to_server = Sending::None; // the 200 KB and nothing more that way

    SUBCASE("the reader drains it within the timeout: the socket leaves the map then, and detach succeeds")
    {
        Child child = start_pool(sb, spec);
        wait_sockets(sb.pin_dir(), 2);
        child.channel().send("read after 500");
        const auto start = Clock::now();
        const auto d = detach(sb, 5);
        const long took = ms_since(start);
        INFO("detach: " << d.out << d.err);
        CHECK(d.exit_code == 0);
        CHECK(d.err.empty());
        CHECK(d.out.find("2 of 2 socket(s) back on TCP") != std::string::npos);
        CHECK(took >= 450);
        const auto left = wait_gone(ours);
        CHECK_MESSAGE(left.progs.empty(), describe(left));
        CHECK_MESSAGE(left.maps.empty(), describe(left));
        sleep_ms(300);
        const auto r = stop_pool(child);
        CHECK_MESSAGE(r.ok, r.text);
        MESSAGE("200 KB unread, read 500 ms into the detach: detach took " << took << " ms; " << r.bytes
                                                                           << " bytes verified");
    }

    SUBCASE("the timeout comes first: detach says how many sockets it left, exits 1, and the data is intact")
    {
        Child child = start_pool(sb, spec);
        wait_sockets(sb.pin_dir(), 2);
        const auto d = detach(sb, 0);
        INFO("detach: " << d.out << d.err);
        CHECK(d.exit_code == 1);
        CHECK(line_count(d.err) == 1);
        CHECK(d.err.find("sockredir-min: 1 socket(s) still hold unread redirected data after 0 s") == 0);
        CHECK(d.out.find("1 of 2 socket(s) back on TCP") != std::string::npos);
        CHECK_FALSE(exists(sb.pin_dir()));
        // The socket left in the map keeps the sk_msg program and the maps until its connection closes.
        CHECK_FALSE(still_there(ours).progs.empty());
        child.channel().send("read");
        sleep_ms(300);
        const auto r = stop_pool(child);
        CHECK_MESSAGE(r.ok, r.text);
        const auto left = wait_gone(ours);
        CHECK_MESSAGE(left.progs.empty(), describe(left));
        CHECK_MESSAGE(left.maps.empty(), describe(left));
    }
}

TEST_CASE("detach while senders write in a loop on both ends loses, reorders and corrupts no byte")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    if (evict_support().empty())
        SKIP_TEST_CASE("this kernel loads neither eviction program (see the messages)");
    const auto ours = pinned_ids(sb.pin_dir());
    PoolSpec spec;
    spec.connections = 4;
    spec.client_to_server = Sending::Tight;
    spec.server_to_client = Sending::Tight;
    Child child = start_pool(sb, spec);
    wait_sockets(sb.pin_dir(), 8);
    sleep_ms(500);
    const auto d = detach(sb, 5);
    INFO("detach: " << d.out << d.err);
    CHECK(d.exit_code == 0);
    CHECK(d.out.find("8 of 8 socket(s) back on TCP") != std::string::npos);
    const auto left = wait_gone(ours);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
    sleep_ms(500);
    const auto r = stop_pool(child);
    CHECK_MESSAGE(r.ok, r.text);
    MESSAGE("4 connections written in a loop both ways through the detach: " << r.bytes << " bytes verified; "
                                                                             << d.out.substr(0, d.out.find('\n')));
}

TEST_CASE("where no eviction program can run, detach works as before and says the connections keep the sockmap path")
{
    E2E_REQUIRE_KERNEL();
    const char* object = std::getenv("SOCKREDIR_NOEVICT_OBJECT");
    REQUIRE_MESSAGE(object != nullptr, "meson sets SOCKREDIR_NOEVICT_OBJECT");
    Sandbox sb;
    auto args = sb.attach_args();
    args.insert(args.end(), {"--object", object});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const auto ours = pinned_ids(sb.pin_dir());
    PoolSpec spec;
    spec.connections = 2;
    Child child = start_pool(sb, spec);
    wait_sockets(sb.pin_dir(), 4);
    sleep_ms(200);
    const auto d = run_bin({"detach", "--pin-dir", sb.pin_dir(), "--object", object});
    INFO("detach: " << d.out << d.err);
    CHECK(d.exit_code == 0);
    CHECK(d.err.empty());
    CHECK(line_count(d.out) == 1);
    CHECK(d.out.find("; 4 socket(s) keep the sockmap path until their connections close (the object has neither "
                     "sockredir_evict nor sockredir_unmap)") != std::string::npos);
    CHECK_FALSE(exists(sb.pin_dir()));
    // As before this change: the connections hold the sk_msg program and the maps until they close.
    sleep_ms(300);
    CHECK_FALSE(still_there(ours).progs.empty());
    const auto r = stop_pool(child);
    CHECK_MESSAGE(r.ok, r.text);
    const auto left = wait_gone(ours);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}
