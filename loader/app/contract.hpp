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
    // Capacity of the sockhash; 0 keeps the object's max_entries.
    uint32_t max_sockets = 0;
    // The port selection written into the config map; empty: every port.
    PortRanges ports;
};

// Refuses, naming the map or program, an object without the maps and programs sockredir relies on in the shapes
// bpf/sockredir_shared.h gives them, or with a program sockredir would not know how to attach. Other maps may be
// there: the loader creates them as they are. The eviction iterator (SOCKREDIR_PROG_EVICT) may be missing; when
// there, it must be an iterator over a sockmap.
void check_contract(const ebpf::CollectionSpec& spec);

// The programs sockredir works without (the eviction programs): detach loads them where the kernel can
// (ebpf::LoadOptions::optional), and check reports them apart from its verdict. without_program() says what
// sockredir cannot do without the program `name`; nullptr for a required one (or one it does not know).
const char* without_program(std::string_view name);
std::vector<std::string> optional_programs();
// The programs attach loads and attaches (sock_ops, sk_msg); the optional ones are detach's.
std::vector<std::string> attached_programs();

// The object opened (ebpf::open_object), checked, and set up as attach loads it: the sockhash's capacity and the
// config map's initial value (draining off, the port selection). No syscall: a bad object changes nothing.
ebpf::CollectionSpec sockredir_spec(std::span<const std::byte> object, const ObjectOptions& options);

} // namespace sockredir::app
