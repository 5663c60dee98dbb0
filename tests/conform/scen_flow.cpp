// Scenarios: flow control. A reader that stops reading must hold its sender back (EAGAIN, or a blocked send) long
// before memory runs out; every byte sent meanwhile still arrives once the reader drains. The stories with a
// non-blocking sender use non-blocking sockets on both ends (they run redirected); the blocking sender's keeps its
// blocking sockets (sockredir keeps it on TCP).
#include "tests/conform/scen_helpers.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace conform;
using namespace conform::helpers;

// Plain TCP holds a sender back at a few MiB (send buffer plus the reader's window); a redirected stream may not be
// held back at all, so every attempt stops here: the reader's socket then holds this much, charged to its cgroup.
constexpr size_t kCap = 64 * kMiB;
constexpr size_t kHeldBackWithin = 16 * kMiB;

// The largest of the three values of /proc/sys/net/ipv4/NAME (tcp_rmem, tcp_wmem) in this namespace; 0 if unreadable.
size_t sysctl_max(const char* name)
{
    std::ifstream f(std::string("/proc/sys/net/ipv4/") + name);
    size_t min = 0, def = 0, max = 0;
    return f >> min >> def >> max ? max : 0;
}

// What TCP itself may hold of one direction before it holds its sender back, however it autotunes: the reader's
// largest receive buffer and the sender's largest send buffer (tcp_rmem's and tcp_wmem's maxima). A bound below it
// would judge a buffer size TCP does not promise (sockredir's default --max-inflight is tcp_wmem's maximum).
size_t tcp_may_hold()
{
    return sysctl_max("tcp_rmem") + sysctl_max("tcp_wmem");
}

// Non-blocking sends of `chunk` bytes until EAGAIN stays (no POLLOUT for 300 ms: ACKs in flight that free the send
// buffer come well within that), an error, or `cap` bytes. Returns the bytes sent and sets *stop to "EAGAIN", "cap"
// or the errno name.
size_t send_until_held(int fd, uint32_t seed, size_t chunk, size_t cap, std::string* stop)
{
    std::vector<unsigned char> buf(chunk);
    size_t sent = 0;
    for (;;) {
        if (sent >= cap) {
            *stop = "cap";
            return sent;
        }
        size_t n = std::min(chunk, cap - sent);
        pattern(seed, sent, buf.data(), n);
        ssize_t r = ::send(fd, buf.data(), n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            sent += static_cast<size_t>(r);
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_writable(fd, 300)) {
                continue;
            }
            *stop = "EAGAIN";
            return sent;
        }
        *stop = r < 0 ? errno_name(errno) : "send returned 0";
        return sent;
    }
}

} // namespace

CONFORM_SCENARIO(flow_nonblock_held_back, "flow control",
                 "A non-blocking sender to a reader that stops reading gets EAGAIN; every byte arrives on drain")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 101;
    // Held back within what TCP may hold, and 16 MiB more; the attempt stops 16 MiB past that.
    const size_t bound = tcp_may_hold() + kHeldBackWithin;
    std::string stop;
    size_t sent = send_until_held(pair.client.get(), seed, 64 * kKiB, bound + 16 * kMiB, &stop);
    obs.note("sender stopped by", stop);
    obs.flag("held back within tcp_rmem + tcp_wmem maxima + 16 MiB", stop == "EAGAIN" && sent <= bound);

    Read drained = read_stream(pair.server.get(), seed, 0, sent, 15000);
    obs.flag("reader got every byte sent", drained.end == "complete" && drained.bytes == static_cast<long long>(sent));
    obs.flag("reader's bytes intact", drained.intact);
    obs.flag("writable again after the drain", wait_writable(pair.client.get(), 2000));

    // The stream goes on where it stopped.
    std::vector<unsigned char> more(64 * kKiB);
    pattern(seed, sent, more.data(), more.size());
    size_t queued = 0;
    while (queued < more.size() && wait_writable(pair.client.get(), 2000)) {
        ssize_t r = ::send(pair.client.get(), more.data() + queued, more.size() - queued, MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            break;
        }
        queued += r > 0 ? static_cast<size_t>(r) : 0;
    }
    obs.note("bytes queued after the drain", static_cast<long long>(queued));
    note_read(obs, "reader after the drain", read_stream(pair.server.get(), seed, sent, more.size(), 5000));
}

CONFORM_SCENARIO(flow_blocking_held_back, "flow control",
                 "A blocking sender to a reader that stops reading blocks; every byte arrives on drain")
{
    Pair pair = make_pair();
    const uint32_t seed = 102;
    // More than the bound, less than the cap: a sender that is not held back finishes.
    constexpr size_t total = 24 * kMiB;
    const int fd = pair.client.get();
    std::atomic<size_t> progress{0};
    std::atomic<bool> done{false};
    long long result = 0;
    Thread sender(
        [&] {
            std::vector<unsigned char> buf(64 * kKiB);
            size_t sent = 0;
            while (sent < total) {
                size_t n = std::min(buf.size(), total - sent);
                pattern(seed, sent, buf.data(), n);
                ssize_t r = ::send(fd, buf.data(), n, MSG_NOSIGNAL);
                if (r < 0) {
                    if (errno == EINTR) {
                        continue;
                    }
                    result = -static_cast<long long>(errno);
                    break;
                }
                sent += static_cast<size_t>(r);
                progress.store(sent);
            }
            if (result == 0) {
                result = static_cast<long long>(sent);
            }
            done.store(true);
        },
        [fd] { ::shutdown(fd, SHUT_RDWR); });

    // Blocked: no progress for a second while not done (a sender that can go on moves 64 KiB in microseconds).
    Deadline deadline(10000);
    std::string state;
    size_t last = 0;
    int still = 0;
    while (state.empty()) {
        if (done.load()) {
            state = "finished";
        } else if (deadline.passed()) {
            state = "still sending after 10 s";
        } else {
            sleep_ms(50);
            size_t now = progress.load();
            if (now == last && ++still >= 20) {
                state = "blocked";
            } else if (now != last) {
                last = now;
                still = 0;
            }
        }
    }
    obs.note("sender while the reader does not read", state);
    obs.flag("held back within 16 MiB", state == "blocked" && last <= kHeldBackWithin);

    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 15000));
    sender.join();
    obs.note("sender result", result < 0 ? errno_name(static_cast<int>(-result)) : std::to_string(result));
}

CONFORM_SCENARIO(flow_tiny_messages, "flow control",
                 "1-byte messages to a reader that stops reading (small buffers): held back within 65536 messages")
{
    // Small buffers on both ends (set before connect and before listen, so nothing autotunes them): plain TCP then
    // holds the sender back after a few thousand bytes even when each is its own send().
    constexpr size_t messages = 65536;
    PairOptions options = nonblocking();
    options.on_client = [](int fd) {
        int size = 4096;
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    };
    options.on_listener = [](int fd) {
        int size = 4096;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    };
    Pair pair = make_pair(options);
    const uint32_t seed = 103;
    std::string stop;
    size_t sent = send_until_held(pair.client.get(), seed, 1, messages, &stop);
    obs.note("sender stopped by", stop);
    obs.flag("held back within 65536 messages", stop == "EAGAIN" && sent < messages);

    Read drained = read_stream(pair.server.get(), seed, 0, sent, 10000);
    obs.flag("reader got every byte sent", drained.end == "complete" && drained.bytes == static_cast<long long>(sent));
    obs.flag("reader's bytes intact", drained.intact);
}
