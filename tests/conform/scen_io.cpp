// Scenarios: write sizes at the extremes. One 16 MiB send() on a blocking socket, and 100,000 sends of one byte; the
// reader gets every byte, in order. The blocking writers stay on TCP with sockredir; their twins (_nb) write as an
// event-driven application does and run redirected, moving between redirection and TCP as the reader lags (flow
// control) and catches up.
#include "tests/conform/scen_helpers.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <vector>

namespace {

using namespace conform;
using namespace conform::helpers;

} // namespace

CONFORM_SCENARIO(large_single_write, "write sizes", "One blocking send() of 16 MiB returns 16 MiB; every byte arrives")
{
    Pair pair = make_pair();
    const uint32_t seed = 801;
    constexpr size_t total = 16 * kMiB;
    std::vector<unsigned char> data(total);
    pattern(seed, 0, data.data(), data.size());
    const int client = pair.client.get();
    std::string result;
    Thread sender(
        [&] {
            ssize_t r = ::send(client, data.data(), data.size(), MSG_NOSIGNAL);
            result = r < 0 ? errno_name(errno) : std::to_string(r);
        },
        [client] { ::shutdown(client, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 10000));
    sender.join();
    obs.note("send(16 MiB) returned", result);
}

CONFORM_SCENARIO(tiny_writes, "write sizes", "100,000 blocking 1-byte send()s: every byte arrives, in order")
{
    Pair pair = make_pair();
    const uint32_t seed = 802;
    constexpr size_t total = 100000;
    const int client = pair.client.get();
    long long ones = 0;
    std::string error = "none";
    Thread sender(
        [&] {
            for (size_t i = 0; i < total; ++i) {
                unsigned char byte = 0;
                pattern(seed, i, &byte, 1);
                ssize_t r = ::send(client, &byte, 1, MSG_NOSIGNAL);
                if (r < 0 && errno == EINTR) {
                    --i;
                    continue;
                }
                if (r != 1) {
                    error = r < 0 ? errno_name(errno) : "send returned " + std::to_string(r);
                    break;
                }
                ++ones;
            }
        },
        [client] { ::shutdown(client, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 15000));
    sender.join();
    obs.note("1-byte sends that returned 1", ones);
    obs.note("sender error", error);
}

CONFORM_SCENARIO(
    large_single_write_nb, "write sizes",
    "A non-blocking writer offers one 16 MiB buffer (poll(POLLOUT) after short writes): every byte arrives")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 803;
    constexpr size_t total = 16 * kMiB;
    const int client = pair.client.get();
    Sent sent;
    Thread sender([&] { sent = send_stream(client, seed, 0, total, total, 10000); },
                  [client] { ::shutdown(client, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 10000));
    sender.join();
    note_sent(obs, "writer", sent);
}

CONFORM_SCENARIO(tiny_writes_nb, "write sizes",
                 "100,000 non-blocking 1-byte send()s (poll(POLLOUT) on EAGAIN): every byte arrives, in order")
{
    Pair pair = make_pair(nonblocking());
    const uint32_t seed = 804;
    constexpr size_t total = 100000;
    const int client = pair.client.get();
    Sent sent;
    Thread sender([&] { sent = send_stream(client, seed, 0, total, 1, 15000); },
                  [client] { ::shutdown(client, SHUT_RDWR); });
    note_read(obs, "reader", read_stream(pair.server.get(), seed, 0, total, 15000));
    sender.join();
    note_sent(obs, "writer", sent);
}
