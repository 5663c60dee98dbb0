// Can this kernel run sockredir? One probe per feature (program and map types, helpers, links, mounts) and a verdict.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sockredir::app {

enum class FeatureState {
    Ok,
    Missing,
    NotProbed, // a prerequisite is missing, so this one could not be asked
};

struct Feature {
    std::string name; // "program type sk_msg", "helper bpf_sk_storage_get in sk_msg", ...
    FeatureState state = FeatureState::NotProbed;
    std::string detail; // what the probe saw: "mounted at /sys/fs/bpf", the verifier's last line, ...
    std::string hint;   // Missing only: what provides it ("Linux 5.15+ with CONFIG_NET_SOCK_MSG", ...)
};

struct ProbeReport {
    std::string kernel; // uname release, for the reader
    std::vector<Feature> features;
};

// Runs every probe: loads a few tiny programs and creates a few tiny maps, all
// freed before it returns. Attaches nothing, mounts nothing, pins nothing.
ProbeReport probe_kernel();

// The pure part, testable without a kernel.
bool can_run(const ProbeReport& report);
// "sockredir can run here" or "sockredir cannot run here: <missing features> (<what provides them>)"; one line.
std::string verdict(const ProbeReport& report);
// One line per feature, then "verdict: ...".
std::string format_report(const ProbeReport& report);
// Whether /proc/filesystems text lists `name` ("nodev\tcgroup2").
bool has_filesystem(std::string_view proc_filesystems, std::string_view name);
// The verifier's reason in a verifier log ("unknown func bpf_..."): its last line that is not one of the
// statistics some kernels append even to a rejection ("processed 1 insns ...", "verification time ...").
std::string verifier_reason(std::string_view log);

} // namespace sockredir::app
