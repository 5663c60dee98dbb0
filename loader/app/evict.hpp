// Detach's hand-back of connections to TCP: the sockets of the sockhash taken out by the eviction iterator, each
// once nothing redirected to it is unread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sockredir::app {

// How long detach waits, by default, for sockets with unread redirected data to be read (detach --drain-timeout).
inline constexpr std::chrono::seconds kDefaultDrainTimeout{5};
inline constexpr unsigned kMaxDrainTimeoutSeconds = 3600;

// Between the draining flag and the first eviction: a sendmsg() whose sk_msg program chose the redirect before the
// flag was set still has to put its bytes into the peer's queue (tcp_bpf_send_verdict releases the sender's socket
// lock, then bpf_tcp_ingress takes the receiver's). A socket taken out of the map before those bytes arrive would
// lose them, so no socket is taken out before this much time has passed since the flag (README, Known limits).
inline constexpr std::chrono::milliseconds kInFlightGrace{50};
// Between two runs of the iterator while some socket still holds unread data.
inline constexpr std::chrono::milliseconds kEvictInterval{10};

struct EvictOptions {
    // When the draining flag was set: the grace period runs from there.
    std::chrono::steady_clock::time_point drained_at = std::chrono::steady_clock::now();
    // Give up after this long (from the first run); 0: one run only.
    std::chrono::milliseconds timeout = kDefaultDrainTimeout;
};

struct EvictResult {
    // The eviction iterator is pinned there and ran; when false, `unavailable` says why (attach could not load it,
    // the kernel refused to link it) and every socket kept its sockmap path.
    bool ran = false;
    std::string unavailable;
    std::string how; // the program that ran: SOCKREDIR_PROG_EVICT (the iterator) or SOCKREDIR_PROG_UNMAP
    uint64_t before = 0; // sockets in the sockhash when the eviction began
    uint64_t left = 0;   // sockets in it when it ended
    uint64_t unread = 0; // of those, the ones the iterator kept for their unread redirected data
    unsigned runs = 0;
    std::chrono::milliseconds took{0};
};

// Hands every socket of the sockhash pinned in `dir` back to TCP whose psock holds no unread redirected data, with
// the eviction iterator pinned there where the kernel links it, else the unmap program pinned there; again every
// kEvictInterval, until the sockhash is empty or the timeout has passed. Call it after the draining flag is set, never before: with the
// programs still redirecting, a socket emptied now can receive data again at once. Nothing happens to sockets the
// iterator keeps: they stay in the map with their data.
EvictResult evict_sockets(const std::string& dir, const EvictOptions& options);

// What became of the sockets, for the line that says "detached": "; 16 sockets back on TCP in 61 ms", or that
// they keep the sockmap path (no iterator); empty when there were none.
std::string evict_summary(const EvictResult& r);
// What attach says when the eviction iterator did not load (`why`: the loader's error).
std::string no_evict_note(const std::string& why);
// The one-line failure when sockets had to be left in the map at the timeout; empty when none were.
std::string evict_failure(const EvictResult& r, std::chrono::milliseconds timeout);

// The number of keys in a sockhash of sockredir_key keys.
uint64_t sockets_in_map(int map_fd);

} // namespace sockredir::app
