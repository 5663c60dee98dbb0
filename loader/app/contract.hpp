// The contract with bpf/: the maps and programs sockredir relies on, by name, their shapes, and what attach sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/app/ports.hpp"
#include "loader/ebpf/spec.hpp"

namespace sockredir::app {

// The largest sockhash sockredir creates: the kernel allows more, but every
// entry costs kernel memory, and 16 Mi sockets is beyond any one host.
inline constexpr uint32_t kMaxSockets = 1U << 24;

struct ObjectOptions {
    // Capacity of the sockhash (and of the flows map, one entry per socket); 0 keeps the object's max_entries.
    uint32_t max_sockets = 0;
    // Flow control: what a reader may leave unread before its direction takes TCP (bytes, each message counted
    // with SOCKREDIR_MSG_COST more). 0: default_max_inflight().
    uint64_t max_inflight = 0;
    // The port selection written into the config map; empty: every port.
    PortRanges ports;
    // attach --no-adaptive: streams of small writes stay redirected (SOCKREDIR_F_NO_ADAPTIVE).
    bool no_adaptive = false;
};

// Refuses, naming the map or program, an object without the maps and programs sockredir relies on in the shapes
// bpf/sockredir_shared.h gives them, or with a program sockredir would not know how to attach. Other maps may be
// there: the loader creates them as they are. The eviction iterator (SOCKREDIR_PROG_EVICT) may be missing; when
// there, it must be an iterator over a sockmap.
void check_contract(const ebpf::CollectionSpec& spec);

// The programs attach needs, and the receive-path observers it tries in this order: the first that loads and
// attaches proves readers compatible; without one no connection is redirected (every direction stays on TCP).
inline constexpr const char* kRequiredPrograms[] = {SOCKREDIR_PROG_SOCKOPS, SOCKREDIR_PROG_MSG};
inline constexpr const char* kObserverPrograms[] = {SOCKREDIR_PROG_OBSERVE_MAP, SOCKREDIR_PROG_OBSERVE_TP,
                                                    SOCKREDIR_PROG_OBSERVE_FEXIT};
// The option hooks, each linked to the cgroup beside sock_ops where it loads, under its pin (pins.hpp).
struct OptionHook {
    const char* program;
    const char* link_pin;
};
inline constexpr OptionHook kOptionHooks[] = {{SOCKREDIR_PROG_SETSOCKOPT, "setsockopt_link"},
                                              {SOCKREDIR_PROG_GETSOCKOPT, "getsockopt_link"}};

// The programs sockredir works without (the observers, the eviction programs): attach tries the observers, detach
// loads the eviction programs where the kernel can (ebpf::LoadOptions::optional), and check reports them apart from
// its verdict. without_program() says what sockredir cannot do without the program `name`; nullptr for a required
// one (or one it does not know).
const char* without_program(std::string_view name);
// The eviction programs, detach's.
std::vector<std::string> optional_programs();
// The programs attach loads: sock_ops, sk_msg and the observers.
std::vector<std::string> attached_programs();

// --max-inflight's default: the largest send buffer TCP autotunes to here (the third value of net.ipv4.tcp_wmem),
// about what plain TCP queues for a reader that stops (a receive window that does not grow without reads, and a
// full send buffer): redirected, TCP's own queues come on top of it, so such a reader holds about twice what it
// holds on TCP, where the largest receive buffer (tcp_rmem's, 32 MiB on some hosts) let it hold ten times as much
// (docs/benchmarks.md, "reader stops"). 4 MiB, the kernel's default, when it cannot be read.
uint64_t default_max_inflight();
inline constexpr uint64_t kMinInflight = 64 * 1024;
inline constexpr uint64_t kMaxInflight = 1ULL << 30;

// The object opened (ebpf::open_object), checked, and set up as attach loads it: the sockhash's capacity and the
// config map's initial value (draining off, the port selection). No syscall: a bad object changes nothing.
ebpf::CollectionSpec sockredir_spec(std::span<const std::byte> object, const ObjectOptions& options);

} // namespace sockredir::app
