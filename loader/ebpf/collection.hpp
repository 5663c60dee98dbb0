// From a CollectionSpec to live kernel objects, by name: create maps and fill them, relocate, load programs.
#pragma once

#include <linux/bpf.h>

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/base/fd.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/spec.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::ebpf {

using base::Fd;

struct Map {
    std::string name;
    uint32_t type = 0;
    Fd fd;
};

struct Program {
    std::string name;
    std::string section;
    uint32_t type = 0;
    uint32_t attach_type = 0;
    Fd fd;
};

// An optional program (LoadOptions::optional) that did not load, and why.
struct NotLoaded {
    std::string name;
    base::Error error;
};

// The live objects of one load. Destroying it frees everything that is not pinned or attached.
struct Collection {
    Fd btf;
    ByName<Map> maps{"map"};
    ByName<Program> programs{"program"};
    std::vector<NotLoaded> not_loaded;
};

// BPF_PROG_LOAD, retried once with the verifier log on when it fails (libbpf retry_load, cilium/ebpf): a transient
// failure loads the second time; a rejection throws the second Error, "loading program 'NAME': strerror", with the
// verifier's log attached (Error::log(), empty when the kernel refused before the verifier ran). Prints nothing.
// Shared by load_programs and the feature probes (features.hpp).
Fd load_with_log(sys::ProgLoadArgs args);

struct LoadOptions {
    // The kernel BTF that CO-RE relocations and tracing targets are resolved against, read only when the spec
    // needs it.
    std::string kernel_btf = kKernelBtfPath;
    // Or the kernel BTF already read (read_kernel_btf), for callers that load in several steps: it is 5 MB.
    const elf::Btf* kernel = nullptr;
    // The programs to load, by name; empty: all of them. (A caller that can do without some of them loads those
    // one by one and carries on without the ones the kernel refuses.)
    std::vector<std::string> programs;
    // Programs the caller can do without, by name: one that does not load (the kernel has no BTF, lacks its
    // target or a field it reads, refuses it) is left out of Collection::programs and its Error kept in
    // Collection::not_loaded; the others load as if it were not in the spec. Any other program's failure throws.
    std::vector<std::string> optional;
};

// Each phase is its own function so that a stack trace or a test can name it.
// Loads the object's BTF (when maps or programs refer to it) and creates every map of the spec, with its BTF key
// and value types, and writes its contents. A map of `existing` (one pinned by an earlier load, say) stands for the
// map of its name instead: it is not created or written, and must have the spec's type, key size and value size
// (cilium/ebpf MapReplacements, libbpf bpf_map__reuse_fd); its capacity may differ.
Collection create_maps(const CollectionSpec& spec, std::vector<Map> existing = {});
// The program's instructions with every map reference patched to the map's fd (ld_imm64 src_reg =
// BPF_PSEUDO_MAP_FD, imm = fd). `map_fds`: by map name.
std::vector<bpf_insn> relocate(const ProgramSpec& program, const std::unordered_map<std::string, int>& map_fds);
// Loads every program of the spec into `collection`. A rejection is retried once with the verifier log on; the
// Error thrown then carries the log (Error::log()), and nothing is printed.
void load_programs(const CollectionSpec& spec, Collection& collection, const LoadOptions& options = {});

// create_maps + load_programs.
Collection load_collection(const CollectionSpec& spec, const LoadOptions& options = {});

} // namespace sockredir::ebpf
