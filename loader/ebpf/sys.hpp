// The one thin bpf(2) layer: one function per command, typed arguments in, Fd or sockredir::Error out.
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"

namespace sockredir::ebpf {
using base::Error;
using base::Fd;
} // namespace sockredir::ebpf

namespace sockredir::ebpf::sys {

// The seam under every command (aya's override_syscall): tests put a fake kernel here to drive the decision logic
// without root. Returns the previous backend; nullptr restores the real bpf(2).
using BpfCall = long (*)(int cmd, bpf_attr& attr);
BpfCall override_bpf(BpfCall call);

struct MapCreateArgs {
    uint32_t type = 0;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t flags = 0;
    std::string name; // truncated to BPF_OBJ_NAME_LEN - 1
    int btf_fd = -1;
    uint32_t btf_key_type_id = 0;
    uint32_t btf_value_type_id = 0;
};
Fd map_create(const MapCreateArgs& args);

struct ProgLoadArgs {
    uint32_t type = 0;
    uint32_t expected_attach_type = 0;
    std::span<const bpf_insn> insns;
    std::string license;
    std::string name;
    // Verifier log: empty buffer = no log.
    std::span<char> log;
    uint32_t log_level = 0;
    // The program's BTF (the object's, loaded with btf_load) with its function and line records, so that the
    // verifier log and bpftool show source lines; -1: none.
    int prog_btf_fd = -1;
    std::span<const bpf_func_info> func_info;
    std::span<const bpf_line_info> line_info;
    // Tracing programs: the kernel BTF id of the function or tracepoint they attach to.
    uint32_t attach_btf_id = 0;
};
// On failure throws Error whose code() is the errno; the log (if any) is in args.log.
Fd prog_load(const ProgLoadArgs& args);

Fd btf_load(std::span<const std::byte> btf, std::span<char> log = {});

void map_update(int map_fd, const void* key, const void* value, uint64_t flags);
// false when the key does not exist.
bool map_lookup(int map_fd, const void* key, void* value);
// false at the end of the map; key == nullptr asks for the first key.
bool map_next_key(int map_fd, const void* key, void* next_key);

void obj_pin(int fd, const std::string& path);
Fd obj_get(const std::string& path);

void prog_attach(int prog_fd, int target_fd, uint32_t attach_type, uint32_t flags);
void prog_detach(int prog_fd, int target_fd, uint32_t attach_type);
// Program ids attached to target for attach_type (effective = false: this level only).
std::vector<uint32_t> prog_query(int target_fd, uint32_t attach_type);

// `iter_info`: for BPF_TRACE_ITER, what the iterator walks (the map of a map iterator); nullptr for the others.
Fd link_create(int prog_fd, int target_fd, uint32_t attach_type, const bpf_iter_link_info* iter_info = nullptr);
// BPF_ITER_CREATE: one run of the iterator a link holds, as a file whose read() runs the program and returns what
// it wrote with bpf_seq_write, 0 at the end.
Fd iter_create(int link_fd);
// BPF_RAW_TRACEPOINT_OPEN with no name: the link of a tracing program (tp_btf, fentry, fexit) to the target its
// attach_btf_id named at load. Pinned and detached like any link.
Fd raw_tracepoint_open(int prog_fd);
void link_detach(int link_fd);

struct TestRunResult {
    uint32_t retval = 0;
    uint32_t duration_ns = 0;
};
// BPF_PROG_TEST_RUN, once, on `data` (a packet of at least an Ethernet header for the networking types): the
// program runs in the caller's context, attached to nothing.
TestRunResult prog_test_run(int prog_fd, std::span<const std::byte> data);

bpf_prog_info prog_info(int fd);
bpf_map_info map_info(int fd);
bpf_link_info link_info(int fd);

// BPF_ENABLE_STATS: the kernel keeps the statistics of `type` (BPF_STATS_RUN_TIME: run_cnt and run_time_ns of every
// program) while the returned fd is open. They stop when the last such fd closes, so they end with the process that
// asked, unlike the sysctl kernel.bpf_stats_enabled.
Fd enable_stats(uint32_t type);

// Walks the kernel's id space: BPF_PROG_GET_NEXT_ID, BPF_MAP_GET_NEXT_ID, BPF_LINK_GET_NEXT_ID.
std::vector<uint32_t> all_prog_ids();
std::vector<uint32_t> all_map_ids();
std::vector<uint32_t> all_link_ids();
Fd prog_fd_by_id(uint32_t id);
Fd map_fd_by_id(uint32_t id);

} // namespace sockredir::ebpf::sys
