// Can this kernel run sockredir? The requirements derived from the object (its program types, map types and helper
// calls) plus privileges, bpf(2), cgroup links and the two filesystems; one generic probe each; and a verdict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loader/base/error.hpp"
#include "loader/ebpf/spec.hpp"

namespace sockredir::app {

enum class FeatureState {
    Ok,
    Missing,
    NotProbed, // a prerequisite is missing, so this one could not be asked
};

struct Feature {
    std::string name; // "program type sk_msg", "helper bpf_sk_storage_get in sk_msg", ...
    FeatureState state = FeatureState::NotProbed;
    std::string detail; // what the probe saw: "mounted at /sys/fs/bpf", the verifier's reason, "needs X", ...
    std::string hint;   // Missing only: what provides it ("Linux 4.17+; ...", the privileges sockredir needs, ...)
    // Needed only by a program sockredir works without (contract.hpp): what is lost without it. Such a feature is
    // reported but never part of the verdict. Empty: needed.
    std::string optional = {};
};

struct ProbeReport {
    std::string kernel; // uname release, for the reader
    std::vector<Feature> features;
    // What the kernel offers beyond what the object needs, for the features that will (tracing programs on the
    // receive path): reported, never part of the verdict.
    std::vector<Feature> extras;
};

// One kernel feature the object needs, with the features (by name) that must be there before it can be asked.
struct Requirement {
    enum class Probe { ProgType, MapType, Helper, BtfLoad, CgroupLink, KernelBtf, Tracing };
    std::string name; // the report's line: "helper bpf_get_netns_cookie in sk_msg"
    Probe probe = Probe::ProgType;
    uint32_t type = 0; // the program type (ProgType, Helper, CgroupLink) or map type (MapType)
    uint32_t arg = 0;  // the helper id (Helper), the attach type (CgroupLink) or expected attach type (Tracing)
    std::vector<std::string> needs;
    std::string target = {}; // Tracing: the function or tracepoint it attaches to
    // Asked only by programs sockredir works without: what is lost without it (Feature::optional). Empty: needed.
    std::string optional = {};
};

// What the object asks of the kernel, in report order: each program type, BTF loading when a map needs BTF, each
// map type, each helper called (BPF_JMP | BPF_CALL with src_reg 0) in each program type that calls it, and cgroup
// links for the program attach links to the cgroup, and for each tracing program the kernel's BTF and that program
// on its target. Nothing here is written by hand: a new helper call in bpf/ is a
// new requirement. What only the optional programs ask (contract.hpp) is marked optional.
std::vector<Requirement> kernel_requirements(const ebpf::CollectionSpec& spec);

// What capget(2) says of this process.
struct Privileges {
    // Why attach would be refused: "lacking CAP_SYS_ADMIN", or "capget: ..."; nullopt when it has what it needs.
    std::optional<std::string> lacking;
    bool root = false; // euid 0, for the report
};
Privileges current_privileges();

// Runs every probe for `object` (the embedded one, or another build of bpf/sockredir.bpf.c): loads a few tiny
// programs and creates a few tiny maps, all freed before it returns. Attaches nothing, mounts nothing, pins nothing.
// Throws Error when the object cannot be opened.
ProbeReport probe_kernel(std::span<const std::byte> object);
// The same with the privileges given, not asked of the kernel (tests).
ProbeReport probe_kernel(std::span<const std::byte> object, const Privileges& privileges);
// Only what the verdict rests on: no optional requirement (attach's verdict; the kernel BTF that the optional
// tracing programs would make it read is 30 MB of memory, more than a tight memory cgroup grants).
ProbeReport probe_for_verdict(std::span<const std::byte> object);
// Fills report.extras: what the kernel offers beyond the object (its BTF; tp_btf, fentry and fexit on the receive
// path). The check command's alone: it reads the kernel's BTF (5 MB), which attach's verdict must not pay for.
void probe_beyond(ProbeReport& report);

// The feature every kernel probe needs that this kernel or caller lacks (the bpf(2) system call, privileges), by
// name; nullopt when both are there.
std::optional<std::string> blocking_feature(const ProbeReport& report);

// What the operator can do about a refused call comes from the one hint table (loader/app/hints.hpp).

// The pure part, testable without a kernel.
bool can_run(const ProbeReport& report);
// "sockredir can run here" or "sockredir cannot run here: <missing features> (<what provides them>)"; one line.
std::string verdict(const ProbeReport& report);
// One line per feature, then "verdict: ...".
std::string format_report(const ProbeReport& report);
// Whether /proc/filesystems text lists `name` ("nodev\tcgroup2").
bool has_filesystem(std::string_view proc_filesystems, std::string_view name);

} // namespace sockredir::app
