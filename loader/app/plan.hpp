// The load plan: which maps to create and which programs to load how, decided from the object alone (no syscalls).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "elf/object.hpp"

namespace sockredir::app {

// The largest sockhash sockredir creates: the kernel allows more, but every
// entry costs kernel memory, and 16 Mi sockets is beyond any one host.
inline constexpr uint32_t kMaxSockets = 1U << 24;

struct PlanOptions {
    // Capacity of the sockhash; 0 keeps the object's max_entries.
    uint32_t max_sockets = 0;
};

struct MapPlan {
    elf::MapSpec spec;
    // The kernel accepts this map type only with BTF for key and value.
    bool needs_btf = false;
};

struct ProgramPlan {
    size_t program = 0; // index into LoadPlan::object.programs
    uint32_t prog_type = 0;
    uint32_t expected_attach_type = 0;
    uint32_t attach_type = 0;
};

struct LoadPlan {
    elf::ObjectSpec object;
    std::vector<MapPlan> maps; // same order as object.maps
    std::vector<ProgramPlan> programs;
    // Indexes into maps / programs of the parts sockredir wires together.
    size_t sock_hash = 0;
    size_t counters = 0;
    size_t config = 0;
    size_t path_state = 0;
    size_t sockops = 0;
    size_t msg = 0;
};

// Checks that the object holds exactly what sockredir needs and that every
// map type, program type and relocation is one the loader supports.
LoadPlan make_plan(elf::ObjectSpec object, const PlanOptions& options);

// parse_object + make_plan: everything before the first syscall.
LoadPlan plan_object(std::span<const std::byte> bytes, const PlanOptions& options);

// Name of a map type for messages ("BPF_MAP_TYPE_SOCKHASH" or the number).
std::string map_type_name(uint32_t type);

} // namespace sockredir::app
