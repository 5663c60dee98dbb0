// The tables behind types.hpp. Releases: cilium/ebpf's features matrices (Version:) and bcc's kernel-versions.md.
#include "loader/ebpf/types.hpp"

#include <linux/bpf.h>

#include <cctype>
#include <iterator>

namespace sockredir::ebpf {

namespace {

// Each row names its type once, as the UAPI enum spells it; the name string is made from the same token.
#define PROG(NAME, SINCE, ATTACH, PROBEABLE)                                                                           \
    {                                                                                                                  \
        BPF_PROG_TYPE_##NAME, #NAME, SINCE, ATTACH, PROBEABLE                                                          \
    }

constexpr ProgTypeInfo kProgTypes[] = {
    PROG(SOCKET_FILTER, "3.19", 0, true), PROG(KPROBE, "4.1", 0, true), PROG(SCHED_CLS, "4.1", 0, true),
    PROG(SCHED_ACT, "4.1", 0, true), PROG(TRACEPOINT, "4.7", 0, true), PROG(XDP, "4.8", 0, true),
    PROG(PERF_EVENT, "4.9", 0, true), PROG(CGROUP_SKB, "4.10", 0, true), PROG(CGROUP_SOCK, "4.10", 0, true),
    PROG(LWT_IN, "4.10", 0, true), PROG(LWT_OUT, "4.10", 0, true), PROG(LWT_XMIT, "4.10", 0, true),
    PROG(SOCK_OPS, "4.13", 0, true), PROG(SK_SKB, "4.14", 0, true), PROG(CGROUP_DEVICE, "4.15", 0, true),
    // As the loader loads them (spec.cpp): sk_msg programs say where they will be attached.
    PROG(SK_MSG, "4.17", BPF_SK_MSG_VERDICT, true), PROG(RAW_TRACEPOINT, "4.17", 0, true),
    // These two refuse to load without an attach type of their family.
    PROG(CGROUP_SOCK_ADDR, "4.17", BPF_CGROUP_INET4_CONNECT, true), PROG(LWT_SEG6LOCAL, "4.18", 0, true),
    PROG(LIRC_MODE2, "4.18", 0, true), PROG(SK_REUSEPORT, "4.19", 0, true), PROG(FLOW_DISSECTOR, "4.20", 0, true),
    PROG(CGROUP_SYSCTL, "5.2", 0, true), PROG(RAW_TRACEPOINT_WRITABLE, "5.2", 0, true),
    PROG(CGROUP_SOCKOPT, "5.3", BPF_CGROUP_GETSOCKOPT, true), PROG(TRACING, "5.5", 0, false),
    PROG(STRUCT_OPS, "5.6", 0, false), PROG(EXT, "5.6", 0, false), PROG(LSM, "5.7", 0, false),
    PROG(SK_LOOKUP, "5.9", BPF_SK_LOOKUP, true), PROG(SYSCALL, "5.14", 0, false), // loads only with BPF_F_SLEEPABLE
};
#undef PROG

// Columns: the release, whether the loader creates it (creatable), whether it needs BTF, whether the probe can make
// one, and that smallest one: key and value sizes, max_entries and flags the kernel accepts with nothing else
// (cilium/ebpf createMapTypeAttr). DEF is 4-byte keys and values and one entry, which most types take.
#define MAP(NAME, SINCE, CREATABLE, BTF, PROBEABLE, ...)                                                               \
    {                                                                                                                  \
        BPF_MAP_TYPE_##NAME, #NAME, SINCE, CREATABLE, BTF, PROBEABLE, __VA_ARGS__                                      \
    }
#define DEF 4, 4, 1, 0
// Local storage lives in its owner (a socket, inode, task): no entries of its own, never preallocated.
#define STORAGE 4, 4, 0, BPF_F_NO_PREALLOC

constexpr MapTypeInfo kMapTypes[] = {
    MAP(HASH, "3.19", true, false, true, DEF),
    MAP(ARRAY, "3.19", true, false, true, DEF),
    MAP(PROG_ARRAY, "4.2", false, false, true, DEF),
    MAP(PERF_EVENT_ARRAY, "4.3", true, false, true, DEF),
    MAP(PERCPU_HASH, "4.6", true, false, true, DEF),
    MAP(PERCPU_ARRAY, "4.6", true, false, true, DEF),
    MAP(STACK_TRACE, "4.6", false, false, true, 4, 8, 1, 0), // a value is a whole number of 8-byte frames
    MAP(CGROUP_ARRAY, "4.8", false, false, true, DEF),
    MAP(LRU_HASH, "4.10", true, false, true, DEF),
    MAP(LRU_PERCPU_HASH, "4.10", true, false, true, DEF),
    MAP(LPM_TRIE, "4.11", false, false, true, 8, 8, 1, BPF_F_NO_PREALLOC), // key: a 4-byte prefix length + data
    MAP(ARRAY_OF_MAPS, "4.12", false, false, false, DEF),                  // needs an inner map
    MAP(HASH_OF_MAPS, "4.12", false, false, false, DEF),
    MAP(DEVMAP, "4.14", false, false, true, DEF),
    MAP(SOCKMAP, "4.14", true, false, true, DEF),
    MAP(CPUMAP, "4.15", false, false, true, DEF),
    MAP(XSKMAP, "4.18", false, false, true, DEF),
    MAP(SOCKHASH, "4.18", true, false, true, DEF),
    MAP(CGROUP_STORAGE, "4.19", false, false, true, 8, 4, 0, 0), // key: the cgroup inode id (u64)
    MAP(REUSEPORT_SOCKARRAY, "4.19", false, false, true, DEF),
    MAP(PERCPU_CGROUP_STORAGE, "4.20", false, false, true, 8, 4, 0, 0),
    MAP(QUEUE, "4.20", false, false, true, 0, 4, 1, 0), // no keys
    MAP(STACK, "4.20", false, false, true, 0, 4, 1, 0),
    MAP(SK_STORAGE, "5.2", true, true, true, STORAGE),
    MAP(DEVMAP_HASH, "5.4", false, false, true, DEF),
    MAP(STRUCT_OPS, "5.6", false, false, false, DEF),      // needs a kernel struct_ops type
    MAP(RINGBUF, "5.8", true, false, true, 0, 0, 4096, 0), // max_entries: a power-of-2 number of pages, in bytes
    MAP(INODE_STORAGE, "5.10", false, true, true, STORAGE),
    MAP(TASK_STORAGE, "5.11", false, true, true, STORAGE),
    MAP(BLOOM_FILTER, "5.16", false, false, true, 0, 4, 1, 0),
    MAP(USER_RINGBUF, "6.1", false, false, true, 0, 0, 4096, 0),
};
#undef STORAGE
#undef DEF
#undef MAP

// Every helper of these headers by id, from the kernel's own list: __BPF_FUNC_MAPPER(FN) is "FN(name)," for each
// helper, dense from 0 (unspec), in old headers and new.
#define HELPER_NAME(NAME) "bpf_" #NAME
constexpr const char* kHelperNames[] = {__BPF_FUNC_MAPPER(HELPER_NAME)};
#undef HELPER_NAME
static_assert(std::size(kHelperNames) == __BPF_FUNC_MAX_ID, "helper names must be indexed by enum bpf_func_id");

struct HelperSince {
    uint32_t prog_type; // 0: the helper itself, in the types that first had it
    uint32_t id;
    const char* since;
};

#define H(NAME, SINCE)                                                                                                 \
    {                                                                                                                  \
        0, BPF_FUNC_##NAME, SINCE                                                                                      \
    }
#define IN(TYPE, NAME, SINCE)                                                                                          \
    {                                                                                                                  \
        BPF_PROG_TYPE_##TYPE, BPF_FUNC_##NAME, SINCE                                                                   \
    }

constexpr HelperSince kHelperSince[] = {
    // Program types that were given a helper after it came.
    IN(SOCK_OPS, get_netns_cookie, "5.15"),
    IN(SK_MSG, get_netns_cookie, "5.15"),
    // The helpers, in id order.
    H(map_lookup_elem, "3.19"),
    H(map_update_elem, "3.19"),
    H(map_delete_elem, "3.19"),
    H(probe_read, "4.1"),
    H(ktime_get_ns, "4.1"),
    H(trace_printk, "4.1"),
    H(get_prandom_u32, "4.1"),
    H(get_smp_processor_id, "4.1"),
    H(skb_store_bytes, "4.1"),
    H(l3_csum_replace, "4.1"),
    H(l4_csum_replace, "4.1"),
    H(tail_call, "4.2"),
    H(clone_redirect, "4.2"),
    H(get_current_pid_tgid, "4.2"),
    H(get_current_uid_gid, "4.2"),
    H(get_current_comm, "4.2"),
    H(get_cgroup_classid, "4.3"),
    H(skb_vlan_push, "4.3"),
    H(skb_vlan_pop, "4.3"),
    H(skb_get_tunnel_key, "4.3"),
    H(skb_set_tunnel_key, "4.3"),
    H(perf_event_read, "4.3"),
    H(redirect, "4.4"),
    H(get_route_realm, "4.4"),
    H(perf_event_output, "4.4"),
    H(skb_load_bytes, "4.5"),
    H(get_stackid, "4.6"),
    H(csum_diff, "4.6"),
    H(skb_get_tunnel_opt, "4.6"),
    H(skb_set_tunnel_opt, "4.6"),
    H(skb_change_proto, "4.8"),
    H(skb_change_type, "4.8"),
    H(skb_under_cgroup, "4.8"),
    H(get_hash_recalc, "4.8"),
    H(get_current_task, "4.8"),
    H(probe_write_user, "4.8"),
    H(current_task_under_cgroup, "4.9"),
    H(skb_change_tail, "4.9"),
    H(skb_pull_data, "4.9"),
    H(csum_update, "4.9"),
    H(set_hash_invalid, "4.9"),
    H(get_numa_node_id, "4.10"),
    H(skb_change_head, "4.10"),
    H(xdp_adjust_head, "4.10"),
    H(probe_read_str, "4.11"),
    H(get_socket_cookie, "4.12"),
    H(get_socket_uid, "4.12"),
    H(set_hash, "4.13"),
    H(setsockopt, "4.13"),
    H(skb_adjust_room, "4.13"),
    H(redirect_map, "4.14"),
    H(sk_redirect_map, "4.14"),
    H(sock_map_update, "4.14"),
    H(xdp_adjust_meta, "4.15"),
    H(perf_event_read_value, "4.15"),
    H(perf_prog_read_value, "4.15"),
    H(getsockopt, "4.15"),
    H(override_return, "4.16"),
    H(sock_ops_cb_flags_set, "4.16"),
    H(msg_redirect_map, "4.17"),
    H(msg_apply_bytes, "4.17"),
    H(msg_cork_bytes, "4.17"),
    H(msg_pull_data, "4.17"),
    H(bind, "4.17"),
    H(xdp_adjust_tail, "4.18"),
    H(skb_get_xfrm_state, "4.18"),
    H(get_stack, "4.18"),
    H(skb_load_bytes_relative, "4.18"),
    H(fib_lookup, "4.18"),
    H(sock_hash_update, "4.18"),
    H(msg_redirect_hash, "4.18"),
    H(sk_redirect_hash, "4.18"),
    H(lwt_push_encap, "4.18"),
    H(lwt_seg6_store_bytes, "4.18"),
    H(lwt_seg6_adjust_srh, "4.18"),
    H(lwt_seg6_action, "4.18"),
    H(rc_repeat, "4.18"),
    H(rc_keydown, "4.18"),
    H(skb_cgroup_id, "4.18"),
    H(get_current_cgroup_id, "4.18"),
    H(get_local_storage, "4.19"),
    H(sk_select_reuseport, "4.19"),
    H(skb_ancestor_cgroup_id, "4.19"),
    H(sk_lookup_tcp, "4.20"),
    H(sk_lookup_udp, "4.20"),
    H(sk_release, "4.20"),
    H(map_push_elem, "4.20"),
    H(map_pop_elem, "4.20"),
    H(map_peek_elem, "4.20"),
    H(msg_push_data, "4.20"),
    H(msg_pop_data, "5.0"),
    H(rc_pointer_rel, "5.0"),
    H(spin_lock, "5.1"),
    H(spin_unlock, "5.1"),
    H(sk_fullsock, "5.1"),
    H(tcp_sock, "5.1"),
    H(skb_ecn_set_ce, "5.1"),
    H(get_listener_sock, "5.1"),
    H(skc_lookup_tcp, "5.2"),
    H(tcp_check_syncookie, "5.2"),
    H(sysctl_get_name, "5.2"),
    H(sysctl_get_current_value, "5.2"),
    H(sysctl_get_new_value, "5.2"),
    H(sysctl_set_new_value, "5.2"),
    H(strtol, "5.2"),
    H(strtoul, "5.2"),
    H(sk_storage_get, "5.2"),
    H(sk_storage_delete, "5.2"),
    H(send_signal, "5.3"),
    H(tcp_gen_syncookie, "5.3"),
    H(skb_output, "5.5"),
    H(probe_read_user, "5.5"),
    H(probe_read_kernel, "5.5"),
    H(probe_read_user_str, "5.5"),
    H(probe_read_kernel_str, "5.5"),
    H(jiffies64, "5.5"),
    H(get_netns_cookie, "5.7"),
    H(ringbuf_output, "5.8"),
    H(ringbuf_reserve, "5.8"),
    H(ringbuf_submit, "5.8"),
    H(ringbuf_discard, "5.8"),
    H(ringbuf_query, "5.8"),
    H(ktime_get_boot_ns, "5.8"),
    H(seq_printf, "5.7"),
    H(seq_write, "5.7"),
    H(skc_to_tcp6_sock, "5.9"),
    H(skc_to_tcp_sock, "5.9"),
    H(skc_to_tcp_timewait_sock, "5.9"),
    H(skc_to_tcp_request_sock, "5.9"),
    H(skc_to_udp6_sock, "5.9"),
};
#undef IN
#undef H

template <typename Row, size_t N> const Row* find(const Row (&rows)[N], uint32_t type)
{
    for (const auto& r : rows)
        if (r.type == type)
            return &r;
    return nullptr;
}

std::string lower(const char* s)
{
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

} // namespace

const ProgTypeInfo* find_prog_type(uint32_t type)
{
    return find(kProgTypes, type);
}

const MapTypeInfo* find_map_type(uint32_t type)
{
    return find(kMapTypes, type);
}

std::string map_type_name(uint32_t type)
{
    const auto* t = find_map_type(type);
    return t != nullptr ? std::string("BPF_MAP_TYPE_") + t->name : std::to_string(type);
}

std::string prog_type_name(uint32_t type)
{
    const auto* t = find_prog_type(type);
    return t != nullptr ? std::string("BPF_PROG_TYPE_") + t->name : std::to_string(type);
}

std::string map_type_label(uint32_t type)
{
    const auto* t = find_map_type(type);
    return t != nullptr ? lower(t->name) : std::to_string(type);
}

std::string prog_type_label(uint32_t type)
{
    const auto* t = find_prog_type(type);
    return t != nullptr ? lower(t->name) : std::to_string(type);
}

std::string helper_name(uint32_t id)
{
    if (id > 0 && id < std::size(kHelperNames))
        return kHelperNames[id];
    return "helper #" + std::to_string(id);
}

const char* helper_since(uint32_t prog_type, uint32_t id)
{
    // The program type's own row comes first in the table, so it wins over the helper's.
    for (const auto& h : kHelperSince)
        if (h.id == id && (h.prog_type == 0 || h.prog_type == prog_type))
            return h.since;
    return nullptr;
}

} // namespace sockredir::ebpf
