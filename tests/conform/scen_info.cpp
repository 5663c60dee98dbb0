// Scenario: TCP_INFO after a transfer. Monitoring and load balancers read tcpi_bytes_acked, tcpi_bytes_received and the
// segment counts; only coarse facts are recorded ("at least the bytes transferred"), never exact counts.
#include "tests/conform/scen_helpers.hpp"

// <linux/tcp.h>, not <netinet/tcp.h>: glibc's struct tcp_info stops before the byte and segment counters.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

namespace {

using namespace conform;
using namespace conform::helpers;

bool tcp_info_of(int fd, tcp_info* info)
{
    *info = {};
    socklen_t len = sizeof *info;
    return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, &len) == 0 && len == sizeof *info;
}

} // namespace

CONFORM_SCENARIO(tcp_info_counters, "TCP_INFO", "TCP_INFO byte and segment counters move after a 1 MiB transfer")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 601;
    constexpr size_t total = kMiB;
    // One loopback segment carries up to 64 KiB: 1 MiB is at least 16 of them.
    constexpr unsigned segments = 16;
    const int client = pair.client.get();
    Sent sent;
    Thread sender([&] { sent = send_stream(client, seed, 0, total, 64 * kKiB, 5000); },
                  [client] { ::shutdown(client, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 5000));
    sender.join();
    note_sent(obs, "sent", sent);
    // The answer carries the acknowledgement of everything: the sender's counters are final once it is read.
    obs.ret("answer 1", send_pattern(pair.server.get(), seed + 1, 0, 1));
    note_read(obs, "answer", read_stream(client, seed + 1, 0, 1, 2000));

    tcp_info c{};
    tcp_info s{};
    obs.flag("TCP_INFO of the sender", tcp_info_of(client, &c));
    obs.flag("TCP_INFO of the reader", tcp_info_of(pair.server.get(), &s));
    obs.note("sender tcpi_state", c.tcpi_state);
    obs.flag("sender tcpi_bytes_sent >= 1 MiB", c.tcpi_bytes_sent >= total);
    obs.flag("sender tcpi_bytes_acked >= 1 MiB", c.tcpi_bytes_acked >= total);
    obs.flag("sender tcpi_segs_out >= 16", c.tcpi_segs_out >= segments);
    obs.flag("sender tcpi_data_segs_out >= 16", c.tcpi_data_segs_out >= segments);
    obs.note("sender tcpi_unacked", c.tcpi_unacked);
    obs.flag("sender tcpi_bytes_received >= 1", c.tcpi_bytes_received >= 1);
    obs.note("reader tcpi_state", s.tcpi_state);
    obs.flag("reader tcpi_bytes_received >= 1 MiB", s.tcpi_bytes_received >= total);
    obs.flag("reader tcpi_segs_in >= 16", s.tcpi_segs_in >= segments);
    obs.flag("reader tcpi_data_segs_in >= 16", s.tcpi_data_segs_in >= segments);
}
