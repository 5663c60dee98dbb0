// The shapes sockredir relies on, checked on the spec by name; the initial values attach gives the maps.
#include "loader/app/contract.hpp"

#include <linux/tcp.h>
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
static_assert(sizeof(sockredir_unmap_batch) == 8 + SOCKREDIR_UNMAP_BATCH * (48 + 4), "the batch has no padding");
static_assert(sizeof(sockredir_evict_record) == 56, "an iterator record has no padding");
// config.defects took the word that was reserved: max_inflight and ports stay where older objects have them.
static_assert(offsetof(sockredir_config, defects) == 4 && offsetof(sockredir_config, max_inflight) == 8,
              "the config's layout must not move");

static_assert(offsetof(tcp_info, tcpi_bytes_acked) == SOCKREDIR_TCPI_BYTES_ACKED &&
                  offsetof(tcp_info, tcpi_bytes_received) == SOCKREDIR_TCPI_BYTES_RECEIVED &&
                  offsetof(tcp_info, tcpi_segs_out) == SOCKREDIR_TCPI_SEGS_OUT &&
                  offsetof(tcp_info, tcpi_segs_in) == SOCKREDIR_TCPI_SEGS_IN &&
                  offsetof(tcp_info, tcpi_data_segs_in) == SOCKREDIR_TCPI_DATA_SEGS_IN &&
                  offsetof(tcp_info, tcpi_data_segs_out) == SOCKREDIR_TCPI_DATA_SEGS_OUT &&
                  offsetof(tcp_info, tcpi_bytes_sent) == SOCKREDIR_TCPI_BYTES_SENT,
              "bpf/sockredir_shared.h disagrees with <linux/tcp.h> on struct tcp_info");

namespace {

struct MapShape {
    const char* name;
    uint32_t type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t min_entries;
    uint32_t flags;
    bool optional = false; // used by an optional program alone: checked when there
};

// What the loader and the programs agree on; bpf/sockredir_shared.h is the source.
constexpr MapShape kMapShapes[] = {
    {SOCKREDIR_MAP_SOCKS, BPF_MAP_TYPE_SOCKHASH, sizeof(sockredir_key), sizeof(uint64_t), 1, 0},
    {SOCKREDIR_MAP_COUNTERS, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(uint64_t), SOCKREDIR_COUNTER_MAX, 0},
    {SOCKREDIR_MAP_CONFIG, BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(sockredir_config), 1, 0},
    {SOCKREDIR_MAP_SOCK_STATE, BPF_MAP_TYPE_SK_STORAGE, sizeof(int), sizeof(sockredir_sock), 0, BPF_F_NO_PREALLOC},
    {SOCKREDIR_MAP_FLOWS, BPF_MAP_TYPE_HASH, sizeof(sockredir_key), sizeof(sockredir_flow), 1, BPF_F_NO_PREALLOC},
    {SOCKREDIR_MAP_LEARNED, BPF_MAP_TYPE_LRU_HASH, sizeof(sockredir_learn_key), sizeof(uint32_t), 1, 0},
    {SOCKREDIR_MAP_UNMAP_BATCH, BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(sockredir_unmap_batch), 1, 0, true},
};

// Who loads a program: attach (and keeps it), or detach (to hand the sockets back to TCP).
enum class Role { Attach, Detach };

struct ProgramShape {
    const char* name;
    uint32_t type;
    uint32_t expected_attach_type;
    const char* attach_to; // tracing programs: the target in the section name; nullptr: none
    // Programs sockredir works without: what it cannot do without them; nullptr: required.
    const char* without;
    Role role;
};

// The programs attach wires up: sock_ops to the cgroup, sk_msg to the sockhash, the first receive-path observer
// that loads to its tracepoint or function; and the two detach runs to hand the sockets of the sockhash back to TCP
// (evict.hpp). sockredir works without the observers (then nothing is redirected) and the eviction programs.
constexpr ProgramShape kProgramShapes[] = {
    {SOCKREDIR_PROG_SOCKOPS, BPF_PROG_TYPE_SOCK_OPS, 0, nullptr, nullptr, Role::Attach},
    {SOCKREDIR_PROG_MSG, BPF_PROG_TYPE_SK_MSG, 0, nullptr, nullptr, Role::Attach},
    {SOCKREDIR_PROG_OBSERVE_MAP, BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, "tcp_bpf_recvmsg",
     "attach observes readers with " SOCKREDIR_PROG_OBSERVE_TP " instead, which runs on every read of the host",
     Role::Attach},
    {SOCKREDIR_PROG_OBSERVE_TP, BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, "sock_recv_length",
     "attach observes readers with " SOCKREDIR_PROG_OBSERVE_FEXIT " instead", Role::Attach},
    {SOCKREDIR_PROG_OBSERVE_FEXIT, BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, "sock_recvmsg",
     "needed only where neither " SOCKREDIR_PROG_OBSERVE_MAP " nor " SOCKREDIR_PROG_OBSERVE_TP
     " loads; without all three, no connection is redirected",
     Role::Attach},
    {SOCKREDIR_PROG_SETSOCKOPT, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, nullptr,
     "a socket that sets SO_RCVLOWAT, SO_PEEK_OFF or TCP_INQ on a redirected connection leaves redirection only at "
     "its next read",
     Role::Attach},
    {SOCKREDIR_PROG_GETSOCKOPT, BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT, nullptr,
     "TCP_INFO's byte and segment counters leave out redirected traffic", Role::Attach},
    {SOCKREDIR_PROG_EVICT, BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, "sockmap",
     "detach hands connections back to TCP with " SOCKREDIR_PROG_UNMAP " instead", Role::Detach},
    {SOCKREDIR_PROG_UNMAP, BPF_PROG_TYPE_SCHED_CLS, 0, nullptr,
     "needed only where " SOCKREDIR_PROG_EVICT " does not load; without both, connections keep the sockmap path "
     "after detach until they close",
     Role::Detach},
};

std::string known_programs()
{
    std::string names;
    for (const auto& shape : kProgramShapes)
        names += (names.empty() ? "" : ", ") + std::string(shape.name);
    return names;
}

void check_program(const ebpf::ProgramSpec& p, const ProgramShape& shape)
{
    const auto what = "program '" + p.name + "' (section '" + p.section + "')";
    if (p.type != shape.type)
        throw Error(what + ": type " + ebpf::prog_type_name(p.type) + ", sockredir needs " +
                    ebpf::prog_type_name(shape.type));
    if (shape.type == BPF_PROG_TYPE_CGROUP_SOCKOPT && p.expected_attach_type != shape.expected_attach_type)
        throw Error(what + ": sockredir needs it in section '" +
                    (shape.expected_attach_type == BPF_CGROUP_SETSOCKOPT ? "cgroup/setsockopt" : "cgroup/getsockopt") +
                    "'");
    if (shape.attach_to != nullptr &&
        (p.expected_attach_type != shape.expected_attach_type || p.attach_to != shape.attach_to))
        throw Error(what + ": sockredir needs it on '" + shape.attach_to + "' as " +
                    (shape.expected_attach_type == BPF_TRACE_ITER   ? "an iterator"
                     : shape.expected_attach_type == BPF_TRACE_FEXIT ? "fexit"
                                                                     : "tp_btf"));
}

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
        if (m == nullptr && shape.optional)
            continue;
        if (m == nullptr)
            throw Error(std::string("map '") + shape.name + "': missing (sockredir needs it)");
        check_map(*m, shape);
    }
    for (const auto& shape : kProgramShapes) {
        const ebpf::ProgramSpec* p = spec.programs.find(shape.name);
        if (p == nullptr && shape.without != nullptr)
            continue;
        if (p == nullptr)
            throw Error(std::string("program '") + shape.name + "': missing (sockredir needs it)");
        check_program(*p, shape);
    }
    for (const auto& p : spec.programs) {
        bool known = false;
        for (const auto& shape : kProgramShapes)
            known = known || p.name == shape.name;
        if (!known)
            throw Error("program '" + p.name + "' (section '" + p.section + "'): not one sockredir attaches (" +
                        known_programs() + ")");
    }
    if (spec.programs.contains(SOCKREDIR_PROG_UNMAP) && !spec.maps.contains(SOCKREDIR_MAP_UNMAP_BATCH))
        throw Error(std::string("map '") + SOCKREDIR_MAP_UNMAP_BATCH + "': missing (program '" + SOCKREDIR_PROG_UNMAP +
                    "' needs it)");
}

const char* without_program(std::string_view name)
{
    for (const auto& shape : kProgramShapes)
        if (name == shape.name)
            return shape.without;
    return nullptr;
}

std::vector<std::string> attached_programs()
{
    std::vector<std::string> names;
    for (const auto& shape : kProgramShapes)
        if (shape.role == Role::Attach)
            names.emplace_back(shape.name);
    return names;
}

std::vector<std::string> optional_programs()
{
    std::vector<std::string> names;
    for (const auto& shape : kProgramShapes)
        if (shape.role == Role::Detach)
            names.emplace_back(shape.name);
    return names;
}

uint64_t default_max_inflight()
{
    // The kernel's own default for tcp_wmem's maximum.
    constexpr uint64_t kKernelDefault = 4ULL << 20;
    try {
        // "4096\t16384\t4194304\n": min, default, max.
        const std::string text = base::read_file_text("/proc/sys/net/ipv4/tcp_wmem");
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
    if (options.no_adaptive)
        config.flags |= SOCKREDIR_F_NO_ADAPTIVE;
    config.max_inflight = options.max_inflight != 0 ? options.max_inflight : default_max_inflight();
    spec.maps.at(SOCKREDIR_MAP_CONFIG).set(uint32_t{0}, config);
    return spec;
}

} // namespace sockredir::app
