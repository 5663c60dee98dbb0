// Connection set-up races: thousands of clients that send right after connect() on loaded CPUs, every byte in order.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/status.hpp"
#include "loader/ebpf/sys.hpp"

using namespace e2e;
using sockredir::base::Fd;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kConnections = 4000;
constexpr int kBudgetMs = 25000; // no new connection after this; what ran must be enough to show the race
constexpr int kClientThreads = 4;
constexpr int kServerThreads = 8; // two per listener
constexpr uint32_t kMagic = 0x53524143;

uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The writes of connection `id`: 2 to 6 of them, log-uniform from 1 byte to 64 KiB. Both ends derive them from the id.
std::vector<uint32_t> writes_of(uint32_t id)
{
    uint64_t r = mix(id * 7919ULL + 1);
    std::vector<uint32_t> sizes(2 + r % 5);
    for (auto& s : sizes) {
        r = mix(r);
        const double e = static_cast<double>(r >> 11) / static_cast<double>(1ULL << 53) * 16.0;
        s = std::max<uint32_t>(1, static_cast<uint32_t>(std::exp2(e)));
    }
    return sizes;
}

uint32_t seed_of(uint32_t id)
{
    return 0x7000000u + id;
}

// Listener kinds, by connection id % 4: IPv4 / IPv6, and without / with TCP_DEFER_ACCEPT. With TCP_DEFER_ACCEPT (nginx
// "deferred", haproxy) the server's socket is only created by the client's first data segment, so the client always
// wins the race; without it, loopback usually completes the handshake on the server inside the client's connect().
constexpr int kKinds = 4;
bool deferred(int kind)
{
    return kind >= 2;
}

struct Outcome {
    std::atomic<int> verified{0}, not_in_map{0};
    std::atomic<int> redirected[2] = {0, 0}, tcp[2] = {0, 0}; // [deferred]
    std::atomic<uint64_t> bytes{0};
    std::mutex mu;
    std::vector<std::string> errors;
    void error(const std::string& e)
    {
        std::lock_guard lock(mu);
        errors.push_back(e);
    }
};

// Reads one connection to EOF: the header names it, then every byte must be its pattern in order.
void serve(int fd, Outcome& out)
{
    unsigned char header[8];
    if (!recv_exact(fd, header, sizeof header))
        throw std::runtime_error("no connection header");
    uint32_t magic, id;
    std::memcpy(&magic, header, 4);
    std::memcpy(&id, header + 4, 4);
    if (magic != kMagic)
        throw std::runtime_error("bad connection header");
    uint64_t expected = 0;
    for (auto s : writes_of(id))
        expected += s;
    std::vector<unsigned char> buf(128 * 1024), want(128 * 1024);
    uint64_t got = 0;
    for (;;) {
        const ssize_t n = recv_blocking(fd, buf.data(), buf.size());
        if (n < 0)
            throw_errno("recv");
        if (n == 0)
            break;
        const auto len = static_cast<size_t>(n);
        if (got + len > expected)
            throw std::runtime_error("connection " + std::to_string(id) + ": more bytes than were sent");
        fill_pattern(seed_of(id), got, want.data(), len);
        if (std::memcmp(buf.data(), want.data(), len) != 0) {
            size_t at = 0;
            while (buf[at] == want[at])
                ++at;
            throw std::runtime_error("connection " + std::to_string(id) + ": wrong byte at offset " +
                                     std::to_string(got + at) + " (reordered or lost)");
        }
        got += len;
    }
    if (got != expected)
        throw std::runtime_error("connection " + std::to_string(id) + ": " + std::to_string(got) + " of " +
                                 std::to_string(expected) + " bytes");
    out.bytes += got;
    ++out.verified;
}

// The client: connect, write at once (header and data, several writes), read its socket's path state, close.
void client(uint32_t id, int kind, uint16_t port, int path_map, Outcome& out)
{
    const int family = kind % 2 == 0 ? AF_INET : AF_INET6;
    Fd c = connect_to(family, family == AF_INET ? "127.0.0.1" : "::1", port);
    std::vector<unsigned char> buf(8);
    std::memcpy(buf.data(), &kMagic, 4);
    std::memcpy(buf.data() + 4, &id, 4);
    // The header rides in the first write, so the very first sendmsg after connect() carries the race.
    uint64_t offset = 0;
    bool first = true;
    for (auto size : writes_of(id)) {
        const size_t at = first ? 8 : 0;
        buf.resize(at + size);
        fill_pattern(seed_of(id), offset, buf.data() + at, size);
        first = false;
        send_all(c.get(), buf.data(), buf.size());
        offset += size;
    }
    // The socket's own verdict: absent (never entered the map), TCP (its data took TCP), or redirected.
    const int key = c.get();
    sockredir_sock state{};
    if (!sockredir::ebpf::sys::map_lookup(path_map, &key, &state))
        ++out.not_in_map;
    else if (state.path == SOCKREDIR_PATH_TCP)
        ++out.tcp[deferred(kind)];
    else
        ++out.redirected[deferred(kind)];
}

int run_races(const Channel& ch, const std::string& cgroup, const std::string& pin_dir)
{
    enter_cgroup(cgroup);
    enter_private_netns();
    // Socket storage can be read from user space with the socket's fd as the key.
    Fd path_map = sockredir::ebpf::sys::obj_get(pin_dir + "/" + SOCKREDIR_MAP_SOCK_STATE);
    Fd listeners[kKinds];
    uint16_t ports[kKinds];
    for (int k = 0; k < kKinds; ++k) {
        listeners[k] = k % 2 == 0 ? listen_on(AF_INET, "127.0.0.1", 0) : listen_on(AF_INET6, "::1", 0);
        const int defer_seconds = 5;
        if (deferred(k) &&
            ::setsockopt(listeners[k].get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds, sizeof defer_seconds) != 0)
            throw_errno("TCP_DEFER_ACCEPT");
        if (::listen(listeners[k].get(), 1024) != 0)
            throw_errno("listen");
        ports[k] = local_port(listeners[k].get());
    }
    Outcome out;
    std::atomic<bool> stop{false};
    std::vector<std::thread> servers;
    for (int i = 0; i < kServerThreads; ++i)
        servers.emplace_back([&, fd = listeners[i % kKinds].get()] {
            for (;;) {
                Fd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
                if (!conn) {
                    if (stop)
                        return;
                    continue;
                }
                try {
                    serve(conn.get(), out);
                } catch (const std::exception& e) {
                    out.error(e.what());
                }
            }
        });
    const auto deadline = Clock::now() + std::chrono::milliseconds(kBudgetMs);
    std::atomic<uint32_t> next{0};
    std::atomic<int> started{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClientThreads; ++i)
        clients.emplace_back([&] {
            for (uint32_t id; (id = next++) < kConnections && Clock::now() < deadline;) {
                ++started;
                try {
                    client(id, static_cast<int>(id % kKinds), ports[id % kKinds], path_map.get(), out);
                } catch (const std::exception& e) {
                    out.error("client " + std::to_string(id) + ": " + e.what());
                }
            }
        });
    for (auto& c : clients)
        c.join();
    // Every started connection must be verified by a server; a hang is reported, not waited out.
    const auto drain_deadline = Clock::now() + std::chrono::seconds(15);
    while (out.verified + static_cast<int>(out.errors.size()) < started && Clock::now() < drain_deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ostringstream msg;
    {
        std::lock_guard lock(out.mu);
        msg << "result started=" << started << " verified=" << out.verified << " bytes=" << out.bytes
            << " redirected=" << out.redirected[0] << " tcp=" << out.tcp[0]
            << " deferred_redirected=" << out.redirected[1] << " deferred_tcp=" << out.tcp[1]
            << " not_in_map=" << out.not_in_map << " eagain=" << spurious_eagain() << " errors=" << out.errors.size()
            << " text=";
        for (size_t i = 0; i < out.errors.size() && i < 10; ++i)
            msg << out.errors[i] << "; ";
    }
    ch.send(msg.str());
    if (out.verified + static_cast<int>(out.errors.size()) < started)
        ::_exit(3); // a server is stuck in recv: the process exit ends it
    stop = true;
    for (auto& l : listeners)
        ::shutdown(l.get(), SHUT_RDWR);
    for (auto& s : servers)
        s.join();
    return 0;
}

} // namespace

TEST_CASE("thousands of clients sending right after connect() on busy CPUs race the peer's insertion and never "
          "reorder")
{
    E2E_REQUIRE_KERNEL();
    const auto started = Clock::now();
    Sandbox sb;
    const auto ids_before = snapshot_ids();
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);

    // Busy loops on every CPU (our own children, killed by their destructors), so that softirq processing and the
    // server's accept path get delayed and the clients' first sendmsg can run before the server socket is in the map.
    const unsigned cpus = std::max(2u, std::thread::hardware_concurrency());
    std::vector<Child> burners;
    for (unsigned i = 0; i < cpus; ++i)
        burners.push_back(spawn([](const Channel&) {
            volatile uint64_t spin = 0;
            for (;;) {
                const uint64_t v = spin;
                spin = v + 1;
            }
            return 0;
        }));

    std::string result;
    {
        Child traffic = spawn([&](const Channel& ch) { return run_races(ch, sb.cgroup.path(), sb.pin_dir()); });
        try {
            result = traffic.channel().receive(kBudgetMs + 30000);
        } catch (const std::exception& e) {
            result = std::string("no result from the traffic child: ") + e.what();
        }
        CHECK(traffic.wait(30000) == 0);
    }
    burners.clear();
    const auto status = sockredir::app::read_status(sb.pin_dir());
    const auto d = sb.detach();
    CHECK_MESSAGE(d.exit_code == 0, d.err);
    const auto left = leftover_ours(ids_before);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

    REQUIRE_MESSAGE(result.rfind("result ", 0) == 0, result);
    MESSAGE("connections " << report_field(result, "verified") << " verified of " << report_field(result, "started")
                           << " started (" << report_field(result, "bytes") << " bytes, every one in order)");
    MESSAGE("client sockets, plain listeners: redirected " << report_field(result, "redirected")
                                                           << ", stayed on TCP (client won the race) "
                                                           << report_field(result, "tcp"));
    MESSAGE("client sockets, TCP_DEFER_ACCEPT listeners: redirected "
            << report_field(result, "deferred_redirected") << ", stayed on TCP (client won the race) "
            << report_field(result, "deferred_tcp") << "; not in the map " << report_field(result, "not_in_map"));
    MESSAGE("counters: sockets added " << status.counters[SOCKREDIR_SOCKETS_ADDED] << ", messages redirected "
                                       << status.counters[SOCKREDIR_MSG_REDIRECTED] << " ("
                                       << status.counters[SOCKREDIR_BYTES_REDIRECTED] << " bytes), messages passed "
                                       << status.counters[SOCKREDIR_MSG_PASSED] << "; blocking recv() EAGAIN "
                                       << report_field(result, "eagain") << "; " << cpus << " busy loops; wall time "
                                       << seconds << " s");
    INFO(result);
    CHECK(report_field(result, "errors") == "0");
    CHECK(report_field(result, "verified") == report_field(result, "started"));
    CHECK(std::stoi(report_field(result, "started")) >= 1000);
    // Both outcomes of the race happened: some clients found their peer, some sent before it was in the map.
    CHECK(std::stoi(report_field(result, "redirected")) > 0);
    CHECK(std::stoi(report_field(result, "deferred_tcp")) > 0);
    CHECK(report_field(result, "not_in_map") == "0");
    CHECK(status.counters[SOCKREDIR_MSG_PASSED] > 0);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}
