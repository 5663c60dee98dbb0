// End-to-end proof of the data path: TCP segment counters, intact data, namespace separation, detach under load.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/status.hpp"

using namespace e2e;

namespace {

// The value of "name":<number> in a JSON text, enough for status --json.
uint64_t json_number(const std::string& json, const std::string& name)
{
    const auto at = json.find("\"" + name + "\":");
    if (at == std::string::npos)
        return UINT64_MAX;
    return std::stoull(json.substr(at + name.size() + 3));
}

struct Case {
    std::string name;
    TransferSpec spec;
};

std::vector<Case> loopback_cases()
{
    TransferSpec v4;
    v4.family = AF_INET;
    v4.server_addr = v4.connect_addr = "127.0.0.1";
    v4.seed = 4;
    TransferSpec v6;
    v6.family = AF_INET6;
    v6.server_addr = v6.connect_addr = "::1";
    v6.seed = 6;
    TransferSpec dual;
    dual.family = AF_INET6;
    dual.server_addr = "::";
    dual.v6only_off = true;
    dual.client_family = AF_INET;
    dual.connect_addr = "127.0.0.1";
    dual.seed = 46;
    return {{"IPv4 127.0.0.1", v4}, {"IPv6 ::1", v6}, {"IPv4 client of a dual-stack [::] server", dual}};
}

} // namespace

TEST_CASE("same-host TCP data skips the TCP stack over 127.0.0.1, ::1 and into a dual-stack server, intact")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;

    // Control: the same transfers without sockredir take the TCP stack.
    for (const auto& c : loopback_cases()) {
        INFO("plain " << c.name);
        const auto r = transfer_in_netns(sb.cgroup.path(), c.spec);
        REQUIRE_MESSAGE(r.ok, r.error);
        MESSAGE("plain " << c.name << ": " << r.received << " bytes, segments in " << r.segs_in << " out "
                         << r.segs_out);
        CHECK(r.segs_in >= kPlainMinSegments);
    }

    // Flow control out of the way: every byte is to be redirected, and a reader that lags by more than the default
    // flight (tcp_wmem's maximum) would get some by TCP.
    auto args = sb.attach_args();
    args.insert(args.end(), {"--max-inflight", "1073741824"});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    for (const auto& c : loopback_cases()) {
        INFO("redirected " << c.name);
        const auto before = sockredir::app::read_status(sb.pin_dir());
        const auto r = transfer_in_netns(sb.cgroup.path(), c.spec);
        const auto after = sockredir::app::read_status(sb.pin_dir());
        REQUIRE_MESSAGE(r.ok, r.error);
        MESSAGE("redirected " << c.name << ": " << r.received << " bytes, segments in " << r.segs_in << " out "
                              << r.segs_out);
        CHECK(r.received == c.spec.bytes);
        CHECK(r.segs_in < kRedirectedMaxSegments);
        CHECK(r.segs_out < kRedirectedMaxSegments);
        CHECK(counter(after, SOCKREDIR_SOCKETS_ADDED) - counter(before, SOCKREDIR_SOCKETS_ADDED) == 2);
        CHECK(counter(after, SOCKREDIR_MSG_REDIRECTED) > counter(before, SOCKREDIR_MSG_REDIRECTED));
        CHECK(counter(after, SOCKREDIR_BYTES_REDIRECTED) - counter(before, SOCKREDIR_BYTES_REDIRECTED) == c.spec.bytes);
    }

    // The same counters as the command line reports them.
    const auto st = run_bin({"status", "--json", "--pin-dir", sb.pin_dir()});
    REQUIRE(st.exit_code == 0);
    CHECK(st.out.find("\"attached\":true") != std::string::npos);
    CHECK(json_number(st.out, "messages_redirected") > 0);
    CHECK(json_number(st.out, "messages_redirected") != UINT64_MAX);
}

TEST_CASE("two namespaces in one cgroup with identical 4-tuples at the same time never exchange data")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    // Flow control out of the way: the test counts every byte redirected (a lagging receiver would get some by TCP).
    auto args = sb.attach_args();
    args.insert(args.end(), {"--max-inflight", "1073741824"});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);

    const std::string cgroup = sb.cgroup.path();
    auto start = [&](uint32_t seed) {
        return spawn([cgroup, seed](const Channel& ch) {
            enter_cgroup(cgroup);
            enter_private_netns();
            TransferSpec s;
            s.family = AF_INET;
            s.server_addr = s.connect_addr = s.client_bind = "127.0.0.1";
            s.server_port = 40000;
            s.client_port = 40001;
            s.seed = seed;
            // Both connections exist before either sends: the same key but for the namespace cookie.
            s.after_connect = [&ch] {
                ch.send("connected");
                if (ch.receive() != "go")
                    throw std::runtime_error("expected go");
            };
            ch.send(transfer(s).encode());
            return 0;
        });
    };
    Child one = start(101);
    Child two = start(202);
    REQUIRE(one.channel().receive() == "connected");
    REQUIRE(two.channel().receive() == "connected");

    const auto mid = sockredir::app::read_status(sb.pin_dir());
    CHECK(mid.sockets == 4);

    one.channel().send("go");
    two.channel().send("go");
    const auto r1 = TransferReport::decode(one.channel().receive(60000));
    const auto r2 = TransferReport::decode(two.channel().receive(60000));
    CHECK(one.wait() == 0);
    CHECK(two.wait() == 0);
    // Each receiver checks every byte against its own sender's seed: one foreign byte fails it.
    CHECK_MESSAGE(r1.ok, r1.error);
    CHECK_MESSAGE(r2.ok, r2.error);
    MESSAGE("namespace 1: segments in " << r1.segs_in << " out " << r1.segs_out << "; namespace 2: in " << r2.segs_in
                                        << " out " << r2.segs_out);
    CHECK(r1.segs_in < kRedirectedMaxSegments);
    CHECK(r2.segs_in < kRedirectedMaxSegments);
    const auto end = sockredir::app::read_status(sb.pin_dir());
    CHECK(counter(end, SOCKREDIR_BYTES_REDIRECTED) == 2 * (16ULL << 20));
}

TEST_CASE("a connection between two namespaces over a veth pair stays off the map and on TCP")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const std::string cgroup = sb.cgroup.path();
    constexpr uint64_t kBytes = 16ULL << 20;
    constexpr uint32_t kSeed = 31;

    // Server side: namespace B, 10.231.0.2 on vb (the peer end is created from A).
    Child server = spawn([cgroup](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        ch.send("ready");
        if (ch.receive() != "configure")
            throw std::runtime_error("expected configure");
        run_checked({"ip", "addr", "add", "10.231.0.2/24", "dev", "vb"});
        run_checked({"ip", "link", "set", "vb", "up"});
        const auto before = read_tcp_segments();
        auto listener = listen_on(AF_INET, "10.231.0.2", 40100);
        ch.send("listening");
        sockredir::base::Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn)
            throw std::runtime_error("accept failed");
        TransferReport r;
        r.received = receive_verified(conn.get(), kSeed);
        conn.reset();
        const auto after = read_tcp_segments();
        r.segs_in = after.in - before.in;
        r.segs_out = after.out - before.out;
        r.ok = r.received == kBytes;
        if (!r.ok)
            r.error = "received " + std::to_string(r.received);
        ch.send(r.encode());
        return 0;
    });
    REQUIRE(server.channel().receive() == "ready");

    Child client = spawn([cgroup, peer = server.pid()](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        // Addresses live only inside these two private namespaces.
        run_checked({"ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", std::to_string(peer)});
        run_checked({"ip", "addr", "add", "10.231.0.1/24", "dev", "va"});
        run_checked({"ip", "link", "set", "va", "up"});
        ch.send("configured");
        if (ch.receive() != "send")
            throw std::runtime_error("expected send");
        auto c = connect_to(AF_INET, "10.231.0.2", 40100, "10.231.0.1");
        send_pattern(c.get(), kSeed, 0, kBytes);
        ::shutdown(c.get(), SHUT_WR);
        char tmp[64];
        while (recv_blocking(c.get(), tmp, sizeof tmp) > 0) {
        }
        ch.send("done");
        return 0;
    });
    REQUIRE(client.channel().receive() == "configured");
    server.channel().send("configure");
    REQUIRE(server.channel().receive() == "listening");

    const auto before = sockredir::app::read_status(sb.pin_dir());
    client.channel().send("send");
    const auto r = TransferReport::decode(server.channel().receive(60000));
    CHECK(client.channel().receive() == "done");
    CHECK(client.wait() == 0);
    CHECK(server.wait() == 0);
    const auto after = sockredir::app::read_status(sb.pin_dir());

    REQUIRE_MESSAGE(r.ok, r.error);
    MESSAGE("veth: " << r.received << " bytes, server segments in " << r.segs_in << " out " << r.segs_out);
    CHECK(r.segs_in >= kPlainMinSegments);
    CHECK(counter(after, SOCKREDIR_SOCKETS_ADDED) == counter(before, SOCKREDIR_SOCKETS_ADDED));
    CHECK(counter(after, SOCKREDIR_INSERT_FAILED) == counter(before, SOCKREDIR_INSERT_FAILED));
    CHECK(counter(after, SOCKREDIR_MSG_REDIRECTED) == counter(before, SOCKREDIR_MSG_REDIRECTED));
}

namespace {

// One connection streams the pattern until told to stop; the test detaches in the middle. With receiver_holds the
// receiver stops reading around the detach, so that the peer's redirect queue is full when the maps go away.
void detach_under_traffic(bool receiver_holds)
{
    Sandbox sb;
    const auto ids_before = snapshot_ids();
    // A flight larger than the default: the receiver lags behind a sender it cannot outpace, and a direction held
    // back to TCP comes back only once the reader has caught up, which then never happens; the queue that is to be
    // full at the detach must be the redirect path's.
    auto args = sb.attach_args();
    args.insert(args.end(), {"--max-inflight", std::to_string(256ULL << 20)});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    constexpr uint32_t kSeed = 77;
    // Writes above 64 KiB: a bulk stream, which stays redirected (smaller ones move to TCP: the adaptive path).
    constexpr uint64_t kChunk = 256 * 1024;
    constexpr uint64_t kBeforeDetach = 64ULL << 20;
    constexpr uint64_t kAfterDetach = 64ULL << 20;

    Child child = spawn([cgroup = sb.cgroup.path(), receiver_holds](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        auto listener = listen_on(AF_INET, "127.0.0.1", 0);
        const uint16_t port = local_port(listener.get());
        std::atomic<bool> stop{false}, accepted{false}, hold{false};
        std::atomic<uint64_t> sent{0}, received{0};
        std::string sender_error;
        std::thread sender([&] {
            try {
                auto c = connect_to(AF_INET, "127.0.0.1", port);
                while (!accepted.load())
                    std::this_thread::yield();
                warm_up_client(c.get());
                while (!stop.load()) {
                    send_pattern(c.get(), kSeed, sent.load(), kChunk);
                    sent += kChunk;
                }
                ::shutdown(c.get(), SHUT_WR);
                char tmp[64];
                while (recv_blocking(c.get(), tmp, sizeof tmp) > 0) {
                }
            } catch (const std::exception& e) {
                sender_error = e.what();
                ::shutdown(listener.get(), SHUT_RDWR);
            }
        });
        uint64_t at_detach = 0;
        std::string control_error;
        std::thread control([&] {
            try {
                while (received.load() < kBeforeDetach)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                if (receiver_holds) {
                    hold = true;
                    // Long enough for the sender to fill the receiver's queue and block.
                    std::this_thread::sleep_for(std::chrono::milliseconds(200));
                }
                // Sent but not yet read: what sits in the receiver's redirect queue (or in flight) at the detach.
                const uint64_t s = sent.load(), r = received.load();
                ch.send("streaming unread=" + std::to_string(s > r ? s - r : 0));
                if (ch.receive() != "detached")
                    throw std::runtime_error("expected detached");
                at_detach = received.load();
                hold = false;
                // Keep streaming well past the detach: the rest goes by TCP.
                while (received.load() < at_detach + kAfterDetach)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
            } catch (const std::exception& e) {
                control_error = e.what();
            }
            hold = false;
            stop = true;
        });
        TransferReport r;
        try {
            sockredir::base::Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            accepted = true;
            if (!conn)
                throw std::runtime_error("accept failed");
            warm_up_server(conn.get());
            r.received = receive_verified(conn.get(), kSeed, [&](uint64_t n) {
                received = n;
                while (hold.load())
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
            });
        } catch (const std::exception& e) {
            r.error = e.what();
            stop = true;
            accepted = true;
        }
        control.join();
        sender.join();
        if (r.error.empty())
            r.error = !sender_error.empty() ? sender_error : control_error;
        if (r.error.empty() && r.received != sent.load())
            r.error = "sent " + std::to_string(sent.load()) + " but received " + std::to_string(r.received);
        if (r.error.empty() && r.received < at_detach + kAfterDetach)
            r.error = "the stream stopped after the detach";
        r.ok = r.error.empty();
        ch.send(r.encode());
        return 0;
    });

    const auto streaming = child.channel().receive(60000);
    REQUIRE(streaming.rfind("streaming unread=", 0) == 0);
    const uint64_t unread = std::stoull(streaming.substr(17));
    if (receiver_holds)
        CHECK(unread > 0);
    const auto status = sockredir::app::read_status(sb.pin_dir());
    CHECK(status.sockets == 2);
    CHECK(counter(status, SOCKREDIR_MSG_REDIRECTED) > 0);
    // A receiver that holds its queue through the detach keeps its socket in the map (taking it out would free the
    // unread bytes): detach says so and fails, and the bytes arrive all the same.
    const auto d =
        receiver_holds ? run_bin({"detach", "--pin-dir", sb.pin_dir(), "--drain-timeout", "0"}) : sb.detach();
    // Where this kernel cannot hand sockets back at all, detach leaves every one in the map, and says so on stdout.
    const bool evicts = d.out.find("keep the sockmap path") == std::string::npos;
    if (receiver_holds && evicts) {
        CHECK(d.exit_code == 1);
        CHECK(d.err.find("1 socket(s) still hold unread redirected data") != std::string::npos);
    } else {
        CHECK_MESSAGE(d.exit_code == 0, d.err);
    }
    child.channel().send("detached");
    const auto text = child.channel().receive(120000);
    const auto r = TransferReport::decode(text);
    CHECK(child.wait() == 0);
    CHECK_MESSAGE(r.ok, text);
    // A sender blocked in a redirected sendmsg keeps the sk_msg program and its maps alive past the detach;
    // once the connection is done they must be gone.
    const auto left = leftover_ours(ids_before);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
    MESSAGE("detach under traffic" << std::string(receiver_holds ? " with a full redirect queue" : "") << ": "
                                   << r.received << " bytes verified in order, " << unread << " unread at the detach");
}

} // namespace

TEST_CASE("detach while a redirected connection streams loses, reorders and corrupts no byte")
{
    E2E_REQUIRE_KERNEL();
    detach_under_traffic(false);
}

TEST_CASE("detach while the receiver's redirect queue is full loses, reorders and corrupts no byte")
{
    E2E_REQUIRE_KERNEL();
    detach_under_traffic(true);
}
