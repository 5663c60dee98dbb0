// Limits of the data path: a full sockhash leaves the extra connections on TCP, intact.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
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

// Reads to EOF and checks every byte against the pattern with `seed`.
uint64_t receive_checked(int fd, uint32_t seed)
{
    std::vector<unsigned char> buf(256 * 1024), want(256 * 1024);
    uint64_t got = 0;
    for (;;) {
        const ssize_t n = recv_blocking(fd, buf.data(), buf.size());
        if (n < 0)
            throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
        if (n == 0)
            return got;
        fill_pattern(seed, got, want.data(), static_cast<size_t>(n));
        if (std::memcmp(buf.data(), want.data(), static_cast<size_t>(n)) != 0)
            throw std::runtime_error("wrong byte after stream offset " + std::to_string(got));
        got += static_cast<uint64_t>(n);
    }
}

} // namespace

TEST_CASE("with the sockhash full the extra connections work on TCP with intact data and count as failed inserts")
{
    E2E_REQUIRE_KERNEL();
    constexpr int kConnections = 10;
    constexpr uint64_t kBytes = 4ULL << 20;
    Sandbox sb;
    const auto ids_before = snapshot_ids();
    auto args = sb.attach_args();
    args.insert(args.end(), {"--max-sockets", "4"});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);

    Child child = spawn([cgroup = sb.cgroup.path()](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        Fd listener = listen_on(AF_INET, "127.0.0.1", 0);
        const uint16_t port = local_port(listener.get());
        // All ten are established before any data moves: the first ones fill the map, the rest find it full.
        std::vector<Fd> clients, servers;
        for (int i = 0; i < kConnections; ++i) {
            clients.push_back(connect_to(AF_INET, "127.0.0.1", port));
            servers.emplace_back(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (!servers.back())
                throw std::runtime_error("accept failed");
        }
        ch.send("connected");
        if (ch.receive() != "go")
            throw std::runtime_error("expected go");
        // Both directions of every connection at once, each checked byte by byte.
        std::vector<std::thread> threads;
        std::vector<std::string> errors(4 * kConnections);
        for (int i = 0; i < kConnections; ++i) {
            const auto seed = static_cast<uint32_t>(100 + i);
            const int ends[2] = {clients[i].get(), servers[i].get()};
            for (int side = 0; side < 2; ++side) {
                const int from = ends[side], to = ends[1 - side];
                const uint32_t s = seed * 2 + static_cast<uint32_t>(side);
                threads.emplace_back([from, s, &err = errors[4 * i + 2 * side]] {
                    try {
                        send_pattern(from, s, 0, kBytes);
                        ::shutdown(from, SHUT_WR);
                    } catch (const std::exception& e) {
                        err = e.what();
                    }
                });
                threads.emplace_back([to, s, &err = errors[4 * i + 2 * side + 1]] {
                    try {
                        const uint64_t got = receive_checked(to, s);
                        if (got != kBytes)
                            err = "received " + std::to_string(got) + " of " + std::to_string(kBytes);
                    } catch (const std::exception& e) {
                        err = e.what();
                    }
                });
            }
        }
        for (auto& t : threads)
            t.join();
        std::string report;
        for (size_t i = 0; i < errors.size(); ++i)
            if (!errors[i].empty())
                report += "connection " + std::to_string(i / 4) + ": " + errors[i] + "; ";
        ch.send((report.empty() ? std::string("ok") : report) + " eagain=" + std::to_string(spurious_eagain()));
        return 0;
    });
    REQUIRE(child.channel().receive() == "connected");
    const auto full = sockredir::app::read_status(sb.pin_dir());
    child.channel().send("go");
    const auto text = child.channel().receive(60000);
    const auto report = text.substr(0, text.rfind(" eagain="));
    CHECK(child.wait() == 0);
    const auto end = sockredir::app::read_status(sb.pin_dir());

    MESSAGE("max-sockets 4, " << kConnections << " connections: sockets in the map " << full.sockets
                              << ", insert failed " << full.counters[SOCKREDIR_INSERT_FAILED] << ", bytes redirected "
                              << end.counters[SOCKREDIR_BYTES_REDIRECTED] << " of " << 2 * kConnections * kBytes
                              << ", messages passed " << end.counters[SOCKREDIR_MSG_PASSED]
                              << ", blocking recv() EAGAIN " << text.substr(text.rfind(" eagain=") + 8));
    CHECK_MESSAGE(report == "ok", report);
    CHECK(full.max_sockets == 4);
    CHECK(full.sockets <= 4);
    CHECK(full.counters[SOCKREDIR_SOCKETS_ADDED] == 4);
    CHECK(full.counters[SOCKREDIR_INSERT_FAILED] == 2 * kConnections - 4);
    // The connections in the map were redirected, the others were not: some but not all bytes.
    CHECK(end.counters[SOCKREDIR_BYTES_REDIRECTED] > 0);
    CHECK(end.counters[SOCKREDIR_BYTES_REDIRECTED] < 2 * kConnections * kBytes);

    const auto d = sb.detach();
    CHECK_MESSAGE(d.exit_code == 0, d.err);
    const auto left = leftover_ours(ids_before);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}
