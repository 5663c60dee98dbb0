// attach --ports: connections of a selected port are redirected, all others stay on TCP and never enter the map.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "harness.hpp"
#include "status.hpp"

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

} // namespace

TEST_CASE("attach --ports redirects connections of a selected port and leaves every other on TCP")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    auto args = sb.attach_args();
    args.insert(args.end(), {"--ports", "5001,6000-6010"});
    const auto a = run_bin(args);
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);

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
        const auto before = sockredir::read_status(sb.pin_dir());
        const auto r = transfer_in_netns(sb.cgroup.path(), to_port(c.family, c.port));
        const auto after = sockredir::read_status(sb.pin_dir());
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
