// attach --ports and ports: connections of a selected port are redirected, all others stay on TCP and never enter
// the map; the selection changes live.
#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "harness.hpp"
#include "loader/app/status.hpp"

using namespace e2e;

namespace {

TransferSpec to_port(int family, uint16_t port)
{
    TransferSpec spec;
    spec.family = family;
    spec.server_addr = family == AF_INET ? "127.0.0.1" : "::1";
    spec.connect_addr = spec.server_addr;
    spec.server_port = port;
    return spec;
}

struct Delta {
    uint64_t added = 0;
    uint64_t redirected = 0;
};

// One transfer to `port` in a private netns of the sandbox's cgroup, and what it moved in the counters.
Delta transfer_delta(const Sandbox& sb, TransferSpec spec, TransferReport& report)
{
    const auto before = sockredir::app::read_status(sb.pin_dir());
    report = transfer_in_netns(sb.cgroup.path(), spec);
    const auto after = sockredir::app::read_status(sb.pin_dir());
    return {counter(after, SOCKREDIR_SOCKETS_ADDED) - counter(before, SOCKREDIR_SOCKETS_ADDED),
            counter(after, SOCKREDIR_BYTES_REDIRECTED) - counter(before, SOCKREDIR_BYTES_REDIRECTED)};
}

void attach_with_ports(const Sandbox& sb, const std::string& list)
{
    auto args = sb.attach_args();
    // Flow control out of the way (the largest --max-inflight): these tests count every byte of a transfer on the
    // path its port selects, and a receiver that lags by 4 MiB would send some of them by TCP.
    args.insert(args.end(), {"--ports", list, "--max-inflight", "1073741824"});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
}

std::string ports_of(const Sandbox& sb)
{
    return sockredir::app::read_status(sb.pin_dir()).ports;
}

} // namespace

TEST_CASE("attach --ports redirects connections of a selected port and leaves every other on TCP")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    attach_with_ports(sb, "5001,6000-6010");

    const auto st = run_bin({"status", "--json", "--pin-dir", sb.pin_dir()});
    REQUIRE(st.exit_code == 0);
    CHECK(st.out.find("\"ports\":\"5001,6000-6010\"") != std::string::npos);

    struct Case {
        int family;
        uint16_t port;
        bool selected;
    };
    for (const Case& c : {Case{AF_INET, 5001, true}, Case{AF_INET6, 6005, true}, Case{AF_INET, 5002, false},
                          Case{AF_INET6, 5999, false}}) {
        CAPTURE(c.port);
        const auto before = sockredir::app::read_status(sb.pin_dir());
        const auto r = transfer_in_netns(sb.cgroup.path(), to_port(c.family, c.port));
        const auto after = sockredir::app::read_status(sb.pin_dir());
        REQUIRE_MESSAGE(r.ok, r.error);
        MESSAGE("port " << c.port << std::string(c.selected ? " (selected)" : " (not selected)") << ": segments in "
                        << r.segs_in << " out " << r.segs_out);
        const uint64_t added = counter(after, SOCKREDIR_SOCKETS_ADDED) - counter(before, SOCKREDIR_SOCKETS_ADDED);
        const uint64_t redirected =
            counter(after, SOCKREDIR_BYTES_REDIRECTED) - counter(before, SOCKREDIR_BYTES_REDIRECTED);
        if (c.selected) {
            CHECK(added == 2);
            CHECK(redirected == r.received);
            CHECK(r.segs_in < kRedirectedMaxSegments);
        } else {
            // Never in the map, so the sk_msg program does not even run for it.
            CHECK(added == 0);
            CHECK(redirected == 0);
            CHECK(counter(after, SOCKREDIR_MSG_PASSED) == counter(before, SOCKREDIR_MSG_PASSED));
            CHECK(r.segs_in >= kPlainMinSegments);
        }
    }
}

TEST_CASE("ports changes the selection live: new connections follow it, established ones keep their path")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    attach_with_ports(sb, "5001");
    REQUIRE(ports_of(sb) == "5001");

    // Established on 5001 while it was selected; the selection moves to 5002 before the first byte is sent.
    TransferReport r;
    auto spec = to_port(AF_INET, 5001);
    const std::string pin_dir = sb.pin_dir();
    spec.after_connect = [&pin_dir] {
        const auto p = run_bin({"ports", "--pin-dir", pin_dir, "5002"});
        if (p.exit_code != 0)
            throw std::runtime_error("ports 5002 failed: " + p.err);
    };
    auto d = transfer_delta(sb, spec, r);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(ports_of(sb) == "5002");
    CHECK(d.added == 2);
    CHECK(d.redirected == r.received); // kept its path: every byte redirected
    CHECK(r.segs_in < kRedirectedMaxSegments);

    // New connections follow the new selection.
    d = transfer_delta(sb, to_port(AF_INET, 5001), r);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(d.added == 0);
    CHECK(d.redirected == 0);
    CHECK(r.segs_in >= kPlainMinSegments);
    d = transfer_delta(sb, to_port(AF_INET6, 5002), r);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(d.added == 2);
    CHECK(d.redirected == r.received);

    // The same selection again changes nothing and says so; "all" lifts the selection.
    const auto same = run_bin({"ports", "--pin-dir", pin_dir, "5002"});
    CHECK(same.exit_code == 0);
    CHECK(same.out.find("(unchanged)") != std::string::npos);
    const auto all = run_bin({"ports", "--pin-dir", pin_dir, "all"});
    REQUIRE_MESSAGE(all.exit_code == 0, all.err);
    CHECK(all.out.find("ports: all (was 5002)") == 0);
    CHECK(ports_of(sb) == "all");
    d = transfer_delta(sb, to_port(AF_INET, 5003), r);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(d.added == 2);
    CHECK(d.redirected == r.received);
}

TEST_CASE("ports refuses without an attachment and during an interrupted detach, and changes nothing")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto none = run_bin({"ports", "--pin-dir", sb.pin_dir(), "80"});
    CHECK(none.exit_code == 1);
    CHECK(line_count(none.err) == 1);
    CHECK(none.err.find("not attached (no pins in " + sb.pin_dir() + ")") != std::string::npos);

    attach_with_ports(sb, "80");
    // A detach killed right after it set draining leaves the pins in place.
    RunOptions kill;
    kill.env = {"SOCKREDIR_TEST_KILL_AFTER=drain"};
    const auto killed = run_bin({"detach", "--pin-dir", sb.pin_dir()}, kill);
    REQUIRE(killed.signal == SIGKILL);
    const auto p = run_bin({"ports", "--pin-dir", sb.pin_dir(), "443"});
    CHECK(p.exit_code == 1);
    CHECK(line_count(p.err) == 1);
    CHECK(p.err.find("a detach of the pins in " + sb.pin_dir() + " was interrupted; run detach") != std::string::npos);
    CHECK(ports_of(sb) == "80");
    const auto d = run_bin({"detach", "--pin-dir", sb.pin_dir()});
    CHECK(d.exit_code == 0);
    CHECK_FALSE(exists(sb.pin_dir()));
}
