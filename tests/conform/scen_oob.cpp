// Scenarios: urgent data. send(MSG_OOB), POLLPRI, SIOCATMARK and recv(MSG_OOB), out of line (the default) and with
// SO_OOBINLINE (the urgent byte stays in the stream).
#include "tests/conform/scen_helpers.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cctype>
#include <string>
#include <vector>

namespace {

using namespace conform;
using namespace conform::helpers;

constexpr unsigned char kUrgent = 'X';

std::string at_mark(int fd)
{
    int mark = -1;
    if (::ioctl(fd, SIOCATMARK, &mark) < 0) {
        return errno_name(errno);
    }
    return std::to_string(mark);
}

// recv(MSG_OOB) of one byte: "byte N" or the errno name.
std::string recv_oob(int fd)
{
    unsigned char byte = 0;
    ssize_t r = ::recv(fd, &byte, 1, MSG_OOB | MSG_DONTWAIT);
    if (r < 0) {
        return errno_name(errno);
    }
    return r == 0 ? "0" : "byte " + std::to_string(byte);
}

// One recv() of up to 100 bytes: the count, or the errno name; the bytes are appended to *into.
std::string recv_some(int fd, std::vector<unsigned char>* into)
{
    unsigned char buf[100];
    ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r < 0) {
        return errno_name(errno);
    }
    into->insert(into->end(), buf, buf + r);
    return std::to_string(r);
}

// One urgent byte: TCP sends it in line and moves the urgent pointer to it.
long long send_urgent(int fd)
{
    return ::send(fd, &kUrgent, 1, MSG_OOB | MSG_NOSIGNAL);
}

} // namespace

CONFORM_SCENARIO(oob_out_of_line, "urgent data",
                 "MSG_OOB: POLLPRI, SIOCATMARK, recv(MSG_OOB) gets the byte, the stream stops at the mark")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 501;
    const int client = pair.client.get();
    const int server = pair.server.get();
    obs.ret("send 3", send_pattern(client, seed, 0, 3));
    obs.ret("send 1 MSG_OOB", send_urgent(client));
    obs.note("reader waits for urgent data", poll_once(server, POLLPRI, 2000));
    obs.note("SIOCATMARK before reading", at_mark(server));
    obs.note("recv(MSG_OOB)", recv_oob(server));
    std::vector<unsigned char> stream;
    obs.note("recv up to the mark", recv_some(server, &stream));
    obs.flag("bytes before the mark intact", stream.size() == 3 && check_pattern(seed, 0, stream.data(), 3));
    obs.note("SIOCATMARK at the mark", at_mark(server));
    obs.note("recv(MSG_OOB) again", recv_oob(server));
    obs.ret("send 3 more", send_pattern(client, seed, 3, 3));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(client, SHUT_WR));
    note_read(obs, "after the mark", read_stream(server, seed, 3, 3, 2000, true));
}

CONFORM_SCENARIO(oob_inline, "urgent data",
                 "MSG_OOB with SO_OOBINLINE: the urgent byte stays in the stream, the first read stops at the mark")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 502;
    const int client = pair.client.get();
    const int server = pair.server.get();
    int on = 1;
    obs.ret("setsockopt(SO_OOBINLINE)", ::setsockopt(server, SOL_SOCKET, SO_OOBINLINE, &on, sizeof on));
    obs.ret("send 3", send_pattern(client, seed, 0, 3));
    obs.ret("send 1 MSG_OOB", send_urgent(client));
    obs.ret("send 3 more", send_pattern(client, seed, 3, 3));
    obs.ret("shutdown(SHUT_WR)", ::shutdown(client, SHUT_WR));
    // The FIN comes after every byte: once it is seen, the whole story has arrived.
    obs.note("reader waits for the end", poll_once(server, POLLRDHUP, 2000));
    obs.note("reader", poll_once(server, POLLIN | POLLPRI | POLLRDHUP, 0));
    obs.note("SIOCATMARK before reading", at_mark(server));
    obs.note("recv(MSG_OOB)", recv_oob(server));
    std::vector<unsigned char> stream;
    obs.note("recv up to the mark", recv_some(server, &stream));
    obs.note("SIOCATMARK after the first read", at_mark(server));
    // The rest: the urgent byte in line, then the last 3 bytes, then EOF.
    std::string last;
    Deadline deadline(2000);
    while (!deadline.passed()) {
        last = recv_some(server, &stream);
        if (last == "0" || (last != "EAGAIN" && !std::isdigit(static_cast<unsigned char>(last[0])))) {
            break;
        }
        if (last == "EAGAIN") {
            wait_readable(server, 100);
        }
    }
    obs.note("last recv", last);
    obs.note("stream bytes", static_cast<long long>(stream.size()));
    bool intact = stream.size() == 7 && check_pattern(seed, 0, stream.data(), 3) && stream[3] == kUrgent &&
                  check_pattern(seed, 3, stream.data() + 4, 3);
    obs.flag("stream is the 3 bytes, the urgent byte, the 3 bytes", intact);
}
