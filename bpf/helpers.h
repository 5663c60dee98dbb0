/* The few BPF helper declarations and macros the programs need, so that no libbpf header is required. */
#ifndef SOCKREDIR_HELPERS_H
#define SOCKREDIR_HELPERS_H

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

/* libbpf's encoding of map attributes in BTF (bpf_helpers.h): the number or the type is in the member's type. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
/* <linux/stddef.h> defines __always_inline as plain __inline__, which clang may still outline into .text. */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

/* Byte order: the BPF target here is little-endian (bpfel), like the host. */
#define sr_bswap32(x) __builtin_bswap32(x)
#define sr_bswap16(x) __builtin_bswap16(x)

/* Helper ids come from the kernel's enum bpf_func_id in <linux/bpf.h>. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key,
				    __u64 flags) = (void *)BPF_FUNC_sock_hash_update;
static long (*bpf_msg_redirect_hash)(struct sk_msg_md *msg, void *map, void *key,
				     __u64 flags) = (void *)BPF_FUNC_msg_redirect_hash;
static __u64 (*bpf_get_netns_cookie)(void *ctx) = (void *)BPF_FUNC_get_netns_cookie;
static void *(*bpf_sk_storage_get)(void *map, void *sk, void *value,
				   __u64 flags) = (void *)BPF_FUNC_sk_storage_get;
static long (*bpf_sk_release)(void *sk) = (void *)BPF_FUNC_sk_release;
/* Iterators only: appends to the seq_file that read() returns. */
static long (*bpf_seq_write)(void *seq, const void *data, __u32 len) = (void *)BPF_FUNC_seq_write;

static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static long (*bpf_sock_ops_cb_flags_set)(struct bpf_sock_ops *skops, int flags) = (void *)BPF_FUNC_sock_ops_cb_flags_set;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)BPF_FUNC_probe_read_kernel;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
/* The socket as the kernel's struct tcp_sock (a BTF pointer, CAP_PERFMON), or NULL when it is not a TCP socket. */
struct tcp_sock;
static struct tcp_sock *(*bpf_skc_to_tcp_sock)(void *sk) = (void *)BPF_FUNC_skc_to_tcp_sock;

#endif
