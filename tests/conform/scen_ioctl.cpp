// Scenarios: what a socket says about its queues. FIONREAD (SIOCINQ) on the reader, SIOCOUTQ on the sender, and the
// TCP_INQ hint that recvmsg() returns as a TCP_CM_INQ control message.
#include "tests/conform/scen_helpers.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace conform;
using namespace conform::helpers;

// An ioctl that yields an int: the value, or the errno name.
std::string ioctl_int(int fd, unsigned long request)
{
    int value = 0;
    if (::ioctl(fd, request, &value) < 0) {
        return errno_name(errno);
    }
    return std::to_string(value);
}

// What one recvmsg() with TCP_INQ on returned: the byte count (or errno name), the TCP_CM_INQ value ("absent" when no
// such control message came), and whether the bytes are the pattern at `offset`.
struct InqRead {
    std::string ret;
    std::string inq = "absent";
    bool intact = true;
};

InqRead recv_with_inq(int fd, uint32_t seed, uint64_t offset, size_t len)
{
    InqRead out;
    std::vector<unsigned char> buf(len > 0 ? len : 1);
    iovec iov{buf.data(), len};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r = ::recvmsg(fd, &msg, MSG_DONTWAIT);
    if (r < 0) {
        out.ret = errno_name(errno);
        return out;
    }
    out.ret = std::to_string(r);
    out.intact = check_pattern(seed, offset, buf.data(), static_cast<size_t>(r));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
            int inq = 0;
            std::memcpy(&inq, CMSG_DATA(c), sizeof inq);
            out.inq = std::to_string(inq);
        }
    }
    return out;
}

void note_inq_read(Obs& obs, const std::string& what, const InqRead& r)
{
    obs.note(what + " returned", r.ret);
    obs.note(what + " TCP_CM_INQ", r.inq);
    obs.flag(what + " intact", r.intact);
}

} // namespace

CONFORM_SCENARIO(fionread_after_arrival, "queue sizes",
                 "FIONREAD counts the bytes that arrived, and what is left after partial reads")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 201;
    const int server = pair.server.get();
    // One send below the loopback MSS arrives whole: once the reader is readable, all 1000 bytes are there.
    obs.ret("send 1000", send_pattern(pair.client.get(), seed, 0, 1000));
    obs.flag("readable", wait_readable(server, 2000));
    obs.note("FIONREAD after 1000 arrived", ioctl_int(server, FIONREAD));
    note_read(obs, "read 300", read_stream(server, seed, 0, 300, 2000));
    obs.note("FIONREAD after reading 300", ioctl_int(server, FIONREAD));
    note_read(obs, "read 700", read_stream(server, seed, 300, 700, 2000));
    obs.note("FIONREAD after reading all", ioctl_int(server, FIONREAD));

    // Several sends, then the FIN: once the reader sees the end (the FIN comes after the data), every byte is there.
    obs.ret("send 1000 more", send_pattern(pair.client.get(), seed, 1000, 1000));
    obs.ret("send 1000 more again", send_pattern(pair.client.get(), seed, 2000, 1000));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(pair.client.get(), SHUT_WR));
    obs.note("reader sees the end", poll_once(server, POLLRDHUP, 2000));
    obs.note("FIONREAD after 2000 and the FIN arrived", ioctl_int(server, FIONREAD));
    note_read(obs, "read the rest", read_stream(server, seed, 1000, 2000, 2000, true));
    obs.note("FIONREAD at EOF", ioctl_int(server, FIONREAD));
}

CONFORM_SCENARIO(siocoutq_after_peer_read, "queue sizes",
                 "SIOCOUTQ and SIOCOUTQNSD are 0 once the peer has read everything and answered")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 202;
    const int client = pair.client.get();
    obs.note("SIOCOUTQ before sending", ioctl_int(client, SIOCOUTQ));
    Sent sent;
    {
        Thread sender([&] { sent = send_stream(client, seed, 0, 100000, 64 * kKiB, 5000); },
                      [client] { ::shutdown(client, SHUT_RDWR); });
        note_read(obs, "peer read", read_stream(pair.server.get(), seed, 0, 100000, 5000));
    }
    note_sent(obs, "send 100000", sent);
    // The answer carries the acknowledgement of everything the peer received: once it is read, nothing is unacked.
    obs.ret("peer answers 1", send_pattern(pair.server.get(), seed + 1, 0, 1));
    note_read(obs, "answer", read_stream(pair.client.get(), seed + 1, 0, 1, 2000));
    obs.note("SIOCOUTQ", ioctl_int(pair.client.get(), SIOCOUTQ));
    obs.note("SIOCOUTQNSD", ioctl_int(pair.client.get(), SIOCOUTQNSD));
    obs.note("peer's SIOCINQ", ioctl_int(pair.server.get(), SIOCINQ));
}

CONFORM_SCENARIO(tcp_inq_control_message, "queue sizes",
                 "TCP_INQ: recvmsg() returns a TCP_CM_INQ control message with the bytes still queued")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 203;
    const int server = pair.server.get();
    int on = 1;
    obs.ret("setsockopt(TCP_INQ, 1)", ::setsockopt(server, SOL_TCP, TCP_INQ, &on, sizeof on));
    int value = -1;
    socklen_t len = sizeof value;
    int r = ::getsockopt(server, SOL_TCP, TCP_INQ, &value, &len);
    obs.note("getsockopt(TCP_INQ)", r < 0 ? errno_name(errno) : std::to_string(value));

    obs.ret("send 1500", send_pattern(pair.client.get(), seed, 0, 1500));
    obs.flag("readable", wait_readable(server, 2000));
    note_inq_read(obs, "recvmsg 300", recv_with_inq(server, seed, 0, 300));
    note_inq_read(obs, "recvmsg 1200", recv_with_inq(server, seed, 300, 1200));
    // After the FIN the hint stays non-zero (1) so that a reader goes on to see the EOF.
    obs.ret("shutdown(SHUT_WR)", ::shutdown(pair.client.get(), SHUT_WR));
    obs.note("reader sees the end", poll_once(server, POLLRDHUP, 2000));
    note_inq_read(obs, "recvmsg at EOF", recv_with_inq(server, seed, 1500, 100));
}
