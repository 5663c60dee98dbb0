// Generic kernel feature probes, as cilium/ebpf features/ and libbpf's libbpf_probes.c: each loads a tiny program
// or creates a tiny map, frees it before it returns, and says whether this kernel has the feature and, from the
// tables of types.hpp, since when Linux has it. No printing and no policy: what to require is the caller's.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "loader/ebpf/btf.hpp"

namespace sockredir::ebpf {

// The name of every program and map the probes create, so that a test can tell them from others.
inline constexpr const char* kProbeObjectName = "feature_probe";

enum class Support {
    Ok,
    Missing,
};

struct ProbeResult {
    Support state = Support::Missing;
    // The bpf(2) command whose refusal decided ("BPF_PROG_LOAD") and its errno; empty and 0 when nothing was refused.
    // err is EOPNOTSUPP with no call for a type these probes cannot build (one that needs an attach target).
    std::string call;
    int err = 0;
    // The verifier's reason (verifier_reason() of its log) when it refused a program. Set with Ok too for a helper
    // the verifier knew and whose arguments it refused (the probe passes none).
    std::string reason;
    // The first Linux release with the feature, from the tables of types.hpp ("4.17"); nullptr when unknown.
    const char* since = nullptr;

    bool ok() const noexcept { return state == Support::Ok; }
};

// Loads `r0 = 0; exit` as a program of `type` (cilium HaveProgramType, libbpf libbpf_probe_bpf_prog_type).
ProbeResult have_prog_type(uint32_t type);
// Creates the smallest map of `type` (types.hpp MapTypeInfo), with the minimal BTF (btf.hpp) for a type that needs
// BTF for its key and value (cilium HaveMapType, libbpf libbpf_probe_bpf_map_type).
ProbeResult have_map_type(uint32_t type);
// Loads `call helper_id; r0 = 0; exit` as a program of `prog_type` and classifies the verifier's answer as
// libbpf_probe_bpf_helper and cilium HaveProgramHelper do: "invalid func", "unknown func" or "program of this type
// cannot use helper" mean Missing; any other rejection by the verifier (the probe sets up no arguments) means the
// verifier knew the helper: Ok. A refusal before the verifier ran (no log: an unknown program type, EPERM) is
// Missing: it says nothing of the helper. Probe the program type first.
ProbeResult have_helper(uint32_t prog_type, uint32_t helper_id);
// BPF_LINK_CREATE of a trivial `prog_type` program for `attach_type` on a descriptor that is no cgroup: a kernel
// with cgroup links looks the target up and says EBADF, one without says EINVAL (cilium haveBPFLink).
ProbeResult have_cgroup_link(uint32_t prog_type = BPF_PROG_TYPE_CGROUP_SKB,
                             uint32_t attach_type = BPF_CGROUP_INET_INGRESS);
// BPF_BTF_LOAD of the minimal BTF blob (btf.hpp).
ProbeResult have_btf_load();
// The kernel's own BTF (/sys/kernel/btf/vmlinux), which tracing programs and CO-RE need: there and parseable.
ProbeResult have_kernel_btf(const std::string& path = kKernelBtfPath);
// Loads `r0 = 0; exit` as a BPF_PROG_TYPE_TRACING program of `expected_attach_type` (BPF_TRACE_RAW_TP for tp_btf,
// BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_ITER) aimed at `target` in `kernel` (attach_btf_id). Some kernels refuse
// fentry and fexit with EPERM before the verifier runs while they load tp_btf (kernel-notes section 6): each is asked
// apart. A target the kernel's BTF lacks is Missing with the lookup's words in `reason` and no call.
ProbeResult have_tracing(uint32_t expected_attach_type, const std::string& target, const elf::Btf& kernel);

// The verifier's reason in a verifier log ("unknown func bpf_..."): its last line that is not one of the
// statistics some kernels append even to a rejection ("processed 1 insns ...", "verification time ...").
std::string verifier_reason(std::string_view log);

} // namespace sockredir::ebpf
