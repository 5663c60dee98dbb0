// What is attached, read back from the pins alone: ids, cgroup, sockets in the map, counters.
#pragma once

#include <cstdint>
#include <string>

#include "bpf/sockredir_shared.h"

namespace sockredir::app {

struct Status {
    bool attached = false;
    std::string pin_dir;
    std::string cgroup; // resolved path, empty when not found
    uint64_t cgroup_id = 0;
    uint32_t link_id = 0;
    uint32_t sockops_id = 0;
    uint32_t msg_id = 0;
    uint32_t sock_hash_id = 0;
    uint32_t counters_id = 0;
    uint32_t max_sockets = 0;
    uint64_t sockets = 0;
    bool draining = false;
    std::string ports; // "all" or the selection of attach --ports
    // The receive-path observer attached (a program name), or empty: then no direction is ever redirected.
    std::string observer;
    uint32_t defects = 0; // config.defects: what attach's live self-tests found (SOCKREDIR_DEFECT_*)
    uint64_t counters[SOCKREDIR_COUNTER_MAX] = {};
    // The kernel's run statistics of each program (zero unless kernel.bpf_stats_enabled=1).
    uint64_t sockops_runs = 0;
    uint64_t sockops_run_ns = 0;
    uint64_t msg_runs = 0;
    uint64_t msg_run_ns = 0;
};

// `resolve_cgroup`: find the cgroup's path by its id (a walk of the cgroup2 tree), else leave it empty.
Status read_status(const std::string& pin_dir, bool resolve_cgroup = true);
// One counter (enum sockredir_counter) of the attachment at `pin_dir`, summed over the CPUs: what read_status reads,
// without its walk of the cgroups (the self-tests read it around every send they make).
uint64_t read_counter(const std::string& pin_dir, uint32_t index);

std::string format_text(const Status& s);
std::string format_json(const Status& s);

// s as a JSON string literal, quotes included: '"' and '\\' escaped, control characters as \u00XX.
std::string json_string(const std::string& s);

// Names of the counters, in enum order, as status prints them.
const char* counter_name(int index);

} // namespace sockredir::app
