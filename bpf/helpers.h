/* The few BPF helper declarations and macros the programs need, so that no libbpf header is required. */
#ifndef SOCKREDIR_HELPERS_H
#define SOCKREDIR_HELPERS_H

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

/* libbpf's encoding of map attributes in BTF (bpf_helpers.h): the number or the type is in the member's type. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

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
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)BPF_FUNC_probe_read_kernel;
static void *(*bpf_skc_to_tcp_sock)(void *sk) = (void *)BPF_FUNC_skc_to_tcp_sock;
static long (*bpf_sk_release)(void *sk) = (void *)BPF_FUNC_sk_release;
/* Iterators only: appends to the seq_file that read() returns. */
static long (*bpf_seq_write)(void *seq, const void *data, __u32 len) = (void *)BPF_FUNC_seq_write;

#endif
