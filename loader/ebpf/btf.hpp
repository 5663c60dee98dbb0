// BTF and the kernel: loading an object's BTF (sanitized where the kernel lacks a kind), the kernel's own BTF, and
// the kernel type ids tracing programs attach to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "loader/base/fd.hpp"

namespace sockredir::ebpf {

// Type id of "int" (32-bit, signed) in minimal_btf().
inline constexpr uint32_t kBtfIntTypeId = 1;

// A BTF blob with one type: [1] INT 'int' size=4 bits=32 SIGNED. What the probes give a socket-storage map for its
// 4-byte key and value.
std::vector<std::byte> minimal_btf();

// Which BTF kinds this kernel accepts, probed as libbpf does (FEAT_BTF_*): a tiny blob per kind through
// BPF_BTF_LOAD. Only what `btf` uses is probed; the rest is reported as supported.
elf::BtfKernelSupport probe_btf_support(const elf::Btf& btf);

// BPF_BTF_LOAD of an object's BTF. A kernel that refuses it as it is gets a copy sanitized for the kinds it lacks
// (elf::sanitize, libbpf's bpf_object__sanitize_btf); type ids stay the same, so map and program references hold.
// The Error of a refusal carries the kernel's BTF log.
base::Fd load_btf(const elf::Btf& btf);

inline constexpr const char* kKernelBtfPath = "/sys/kernel/btf/vmlinux";

// The running kernel's BTF. Throws "this kernel has no BTF (...): CONFIG_DEBUG_INFO_BTF=y is needed for ..." when
// the file is missing.
elf::Btf read_kernel_btf(const std::string& path = kKernelBtfPath);

// The kernel BTF id a tracing program of `expected_attach_type` attaches to: the FUNC `name` for fentry and fexit,
// the TYPEDEF "btf_trace_<name>" for tp_btf (what the kernel's tracepoint macros define), the FUNC
// "bpf_iter_<name>" for an iterator (DEFINE_BPF_ITER_FUNC). Throws naming what is missing.
uint32_t attach_btf_id(const elf::Btf& kernel, uint32_t expected_attach_type, const std::string& name);

} // namespace sockredir::ebpf
