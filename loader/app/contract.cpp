// The shapes sockredir relies on, checked on the spec by name; the initial values attach gives the maps.
#include "loader/app/contract.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "loader/base/decimal.hpp"
#include "loader/base/file.hpp"

namespace sockredir::app {

using base::Error;

static_assert(SOCKREDIR_AF_INET == AF_INET, "bpf/sockredir_shared.h disagrees with <sys/socket.h>");
static_assert(SOCKREDIR_AF_INET6 == AF_INET6, "bpf/sockredir_shared.h disagrees with <sys/socket.h>");
static_assert(sizeof(sockredir_key) == 48, "the key must have no padding");
// config.defects took the word that was reserved: max_inflight and ports stay where older objects have them.
static_assert(offsetof(sockredir_config, defects) == 4 && offsetof(sockredir_config, max_inflight) == 8,
              "the config's layout must not move");

namespace {

struct MapShape {
    const char* name;
    uint32_t type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t min_entries;
    uint32_t flags;
};

// What the loader and the programs agree on; bpf/sockredir_shared.h is the source.
constexpr MapShape kMapShapes[] = {
    {SOCKREDIR_MAP_SOCKS, BPF_MAP_TYPE_SOCKHASH, sizeof(sockredir_key), sizeof(uint64_t), 1, 0},
    {SOCKREDIR_MAP_COUNTERS, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(uint64_t), SOCKREDIR_COUNTER_MAX, 0},
    {SOCKREDIR_MAP_CONFIG, BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(sockredir_config), 1, 0},
    {SOCKREDIR_MAP_SOCK_STATE, BPF_MAP_TYPE_SK_STORAGE, sizeof(int), sizeof(sockredir_sock), 0, BPF_F_NO_PREALLOC},
    {SOCKREDIR_MAP_FLOWS, BPF_MAP_TYPE_HASH, sizeof(sockredir_key), sizeof(sockredir_flow), 1, BPF_F_NO_PREALLOC},
    {SOCKREDIR_MAP_LEARNED, BPF_MAP_TYPE_LRU_HASH, sizeof(sockredir_learn_key), sizeof(uint32_t), 1, 0},
};

struct ProgramShape {
    const char* name;
    uint32_t type;
};

// The programs attach wires up: sock_ops to the cgroup, sk_msg to the sockhash, an observer to the receive path.
struct ProgramRole {
    ProgramShape shape;
    bool required;
};
constexpr ProgramRole kPrograms[] = {
    {{SOCKREDIR_PROG_SOCKOPS, BPF_PROG_TYPE_SOCK_OPS}, true},
    {{SOCKREDIR_PROG_MSG, BPF_PROG_TYPE_SK_MSG}, true},
    {{SOCKREDIR_PROG_OBSERVE_TP, BPF_PROG_TYPE_TRACING}, false},
    {{SOCKREDIR_PROG_OBSERVE_FEXIT, BPF_PROG_TYPE_TRACING}, false},
};

void check_map(const ebpf::MapSpec& m, const MapShape& shape)
{
    const auto what = "map '" + m.name + "'";
    if (m.type != shape.type)
        throw Error(what + ": type " + ebpf::map_type_name(m.type) + ", sockredir needs " +
                    ebpf::map_type_name(shape.type));
    if (m.key_size != shape.key_size)
        throw Error(what + ": key size " + std::to_string(m.key_size) + ", expected " + std::to_string(shape.key_size));
    if (m.value_size != shape.value_size)
        throw Error(what + ": value size " + std::to_string(m.value_size) + ", expected " +
                    std::to_string(shape.value_size));
    if (shape.type == BPF_MAP_TYPE_SK_STORAGE ? m.max_entries != 0 : m.max_entries < shape.min_entries)
        throw Error(what + ": max_entries " + std::to_string(m.max_entries) + " is not valid for this map");
    if (m.max_entries > kMaxSockets)
        throw Error(what + ": max_entries " + std::to_string(m.max_entries) + " exceeds " +
                    std::to_string(kMaxSockets));
    if (m.flags != shape.flags)
        throw Error(what + ": flags " + std::to_string(m.flags) + ", expected " + std::to_string(shape.flags));
}

} // namespace

void check_contract(const ebpf::CollectionSpec& spec)
{
    for (const auto& shape : kMapShapes) {
        const ebpf::MapSpec* m = spec.maps.find(shape.name);
        if (m == nullptr)
            throw Error(std::string("map '") + shape.name + "': missing (sockredir needs it)");
        check_map(*m, shape);
    }
    for (const auto& role : kPrograms) {
        const auto& shape = role.shape;
        const ebpf::ProgramSpec* p = spec.programs.find(shape.name);
        if (p == nullptr) {
            if (role.required)
                throw Error(std::string("program '") + shape.name + "': missing (sockredir needs it)");
            continue;
        }
        if (p->type != shape.type)
            throw Error("program '" + p->name + "' (section '" + p->section + "'): type " +
                        ebpf::prog_type_name(p->type) + ", sockredir needs " + ebpf::prog_type_name(shape.type));
    }
    for (const auto& p : spec.programs) {
        bool known = false;
        for (const auto& role : kPrograms)
            known = known || p.name == role.shape.name;
        if (!known)
            throw Error("program '" + p.name + "' (section '" + p.section + "'): not one sockredir attaches (" +
                        SOCKREDIR_PROG_SOCKOPS + ", " + SOCKREDIR_PROG_MSG + ", " + SOCKREDIR_PROG_OBSERVE_TP +
                        ", " + SOCKREDIR_PROG_OBSERVE_FEXIT + ")");
    }
}

uint64_t default_max_inflight()
{
    // The kernel's own default for tcp_rmem's maximum.
    constexpr uint64_t kKernelDefault = 6ULL << 20;
    try {
        // "4096\t131072\t6291456\n": min, default, max.
        const std::string text = base::read_file_text("/proc/sys/net/ipv4/tcp_rmem");
        const auto last = text.find_last_not_of(" \t\n");
        if (last == std::string::npos)
            return kKernelDefault;
        const auto first = text.find_last_of(" \t", last);
        const auto n = base::parse_decimal(std::string_view(text).substr(first + 1, last - first));
        if (!n || *n < kMinInflight)
            return kKernelDefault;
        return std::min<uint64_t>(*n, kMaxInflight);
    } catch (const Error&) {
        return kKernelDefault;
    }
}

ebpf::CollectionSpec sockredir_spec(std::span<const std::byte> object, const ObjectOptions& options)
{
    ebpf::CollectionSpec spec = ebpf::open_object(object);
    check_contract(spec);
    if (options.max_sockets != 0) {
        if (options.max_sockets > kMaxSockets)
            throw Error("--max-sockets " + std::to_string(options.max_sockets) + " exceeds " +
                        std::to_string(kMaxSockets));
        spec.set_max_entries(SOCKREDIR_MAP_SOCKS, options.max_sockets);
        spec.set_max_entries(SOCKREDIR_MAP_FLOWS, options.max_sockets);
    }
    if (options.max_inflight != 0 && (options.max_inflight < kMinInflight || options.max_inflight > kMaxInflight))
        throw Error("--max-inflight " + std::to_string(options.max_inflight) + " is outside " +
                    std::to_string(kMinInflight) + " to " + std::to_string(kMaxInflight));
    // Draining off and the port selection, explicitly: a fresh array is zeroed, but say what we mean.
    sockredir_config config{};
    apply_ports(options.ports, config);
    config.max_inflight = options.max_inflight != 0 ? options.max_inflight : default_max_inflight();
    spec.maps.at(SOCKREDIR_MAP_CONFIG).set(uint32_t{0}, config);
    return spec;
}

} // namespace sockredir::app
