// The attach and detach sequences: named steps from plan to published pins, each one interruptible.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "loader/app/evict.hpp"
#include "loader/app/ports.hpp"

namespace sockredir::app {

struct AttachOptions {
    std::string cgroup;  // empty: the cgroup2 root
    std::string pin_dir; // empty: kDefaultPinDir
    std::span<const std::byte> object;
    uint32_t max_sockets = 0; // 0: as the object says
    uint64_t max_inflight = 0; // 0: default_max_inflight()
    PortRanges ports;         // empty: every port
    bool no_adaptive = false; // --no-adaptive
};

enum class AttachOutcome { Attached, AlreadyAttached };

struct AttachResult {
    AttachOutcome outcome = AttachOutcome::Attached;
    std::string cgroup;
    std::string pin_dir;
    // The receive-path observer attached (SOCKREDIR_PROG_OBSERVE_*), or empty with why none could be: then no
    // connection is redirected, and the CLI says so.
    std::string observer;
    std::string no_observer_reason;
    // The option hooks (kOptionHooks) that could not be loaded or linked, each "program: why"; empty: all linked.
    std::vector<std::string> missing_hooks;
    // Why a detach will leave connections on the sockmap path until they close (this kernel has no BTF); empty when
    // it can hand them back, as far as attach can tell without loading the eviction programs.
    std::string no_evict;
    // What the live self-tests found on this kernel, as sockredir_config.defects: attach_or_verdict's, for a new
    // attachment (attach alone runs none and leaves it 0).
    uint32_t defects = 0;
};

AttachResult attach(const AttachOptions& options);

enum class DetachOutcome { Detached, NotAttached };

struct DetachOptions {
    // How long to wait for sockets with unread redirected data to be read before leaving them in the map.
    std::chrono::milliseconds timeout = kDefaultDrainTimeout;
    // The build of bpf/sockredir.bpf.c whose eviction programs hand the sockets back; empty: the embedded one.
    std::span<const std::byte> object = {};
};

struct DetachResult {
    DetachOutcome outcome = DetachOutcome::NotAttached;
    std::string pin_dir;
    // Stale pins of an interrupted attach that were removed on the way.
    int cleaned_stale = 0;
    // The hand-back of the attachment's sockets to TCP.
    EvictResult evict;
};

// Sets the draining flag (every later message goes by TCP), detaches the cgroup link (no socket enters the map
// any more), hands every socket of the map back to TCP once nothing redirected to it is unread, with eviction
// programs it loads for that (evict.hpp), then removes the pins. Sockets still holding unread data at the timeout stay
// in the map with it: the result says how many; detach succeeds all the same.
DetachResult detach(const std::string& pin_dir, const DetachOptions& options = {});

enum class PortsOutcome { Changed, Unchanged, NotAttached };

struct PortsResult {
    PortsOutcome outcome = PortsOutcome::NotAttached;
    std::string pin_dir;
    std::string before; // format_ports() of the selection before and after
    std::string after;
};

// Replaces the port selection of the attachment pinned in pin_dir (empty ports: every port), in one update of
// the config map. Connections established from then on follow the new selection; established ones keep their
// path. Refused while a detach of those pins is unfinished.
PortsResult set_ports(const std::string& pin_dir, const PortRanges& ports);

// Stores what the live self-tests found (sockredir_config.defects) in the config of the attachment pinned in
// pin_dir, for status. Nothing when nothing is attached there or a detach of it began.
void record_defects(const std::string& pin_dir, uint32_t defects);

// Test hook: when the environment variable SOCKREDIR_TEST_KILL_AFTER names a
// step ("maps", "programs", "pin", "attach_msg", "attach_sockops",
// "publish", "drain", "detach_sockops", "evict", "unpin"), the process kills
// itself with SIGKILL right after that step. For crash-safety tests only.
void step_done(const char* step);

} // namespace sockredir::app
