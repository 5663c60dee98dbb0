// Detach's hand-back of connections to TCP: the sockets of the sockhash taken out by the eviction iterator (or the
// unmap program), each once nothing redirected to it is unread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "loader/base/fd.hpp"

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

struct EvictResult {
    // An eviction program ran; when false, `unavailable` says why (the kernel refused both, the object has none)
    // and every socket kept its sockmap path.
    bool ran = false;
    std::string unavailable;
    std::string how;     // the program that ran: SOCKREDIR_PROG_EVICT (the iterator) or SOCKREDIR_PROG_UNMAP
    uint64_t before = 0; // sockets in the sockhash when the eviction began
    uint64_t left = 0;   // sockets in it when it ended
    uint64_t unread = 0; // of those, the ones the iterator kept for their unread redirected data
    unsigned runs = 0;
    std::chrono::milliseconds took{0};
};

class Evictor;

// Hands every socket of the sockhash pinned in a pin dir back to TCP whose psock holds no unread redirected data.
// Construct it before the draining flag is set: it loads the object's eviction iterator over that map where the
// kernel allows it, else its unmap program, which takes a while (their CO-RE reads need the kernel's BTF: 0.2 s
// and 30 MB here, seconds on busy CPUs), so that the time from the flag to the first run is the in-flight grace
// alone. Nothing is loaded while the map is empty. Then run() after the flag, never before: with the programs
// still redirecting, a socket emptied now can receive data again at once.
class Eviction {
public:
    // `object`: the build of bpf/sockredir.bpf.c whose eviction programs are loaded; empty: the embedded one.
    Eviction(const std::string& dir, std::span<const std::byte> object);
    ~Eviction();
    Eviction(const Eviction&) = delete;
    Eviction& operator=(const Eviction&) = delete;

    // Waits until kInFlightGrace after `drained_at` (when the flag was set), then runs the program again every
    // kEvictInterval until the sockhash is empty or `timeout` (from the first run; 0: one run) has passed. Sockets
    // kept stay in the map with their data.
    EvictResult run(std::chrono::steady_clock::time_point drained_at, std::chrono::milliseconds timeout);

private:
    void load();

    std::string map_path_;
    std::span<const std::byte> object_;
    base::Fd map_;
    bool loaded_ = false;
    std::unique_ptr<Evictor> evictor_;
    std::string unavailable_;
};

// What became of the sockets, for the line that says "detached": "; 16 sockets back on TCP in 61 ms", or that
// they keep the sockmap path (no iterator); empty when there were none.
std::string evict_summary(const EvictResult& r);
// What attach says where detach will not be able to hand connections back (`why`).
std::string no_evict_note(const std::string& why);
// The one-line failure when sockets had to be left in the map at the timeout; empty when none were.
std::string evict_failure(const EvictResult& r, std::chrono::milliseconds timeout);

// The number of keys in a sockhash of sockredir_key keys.
uint64_t sockets_in_map(int map_fd);

} // namespace sockredir::app
