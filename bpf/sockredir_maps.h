/* The maps, declared the way libbpf declares them: BTF-defined, in section ".maps". */
#ifndef SOCKREDIR_MAPS_H
#define SOCKREDIR_MAPS_H

#include "helpers.h"
#include "sockredir_shared.h"

/*
 * Each map is a global variable of an anonymous struct whose members encode the map's attributes in their BTF
 * types (__uint, __type: helpers.h). The loader reads them from the object's BTF and creates each map with its key
 * and value type ids, so bpftool map dump prints every field by name; libbpf and bpftool load this object as it is.
 */

/*
 * By sizes, not types: the kernel takes no BTF for a sockhash, and a create refused for it and retried without costs
 * 30 ms here (the refused map's memory is still being freed). A value of 8 bytes: a lookup from user space returns
 * the socket cookie.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(key_size, sizeof(struct sockredir_key));
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, SOCKREDIR_DEFAULT_MAX_SOCKETS);
} sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, SOCKREDIR_COUNTER_MAX);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sockredir_config);
	__uint(max_entries, 1);
} config SEC(".maps");

/* Socket-local storage: the kernel requires BTF key and value types and BPF_F_NO_PREALLOC. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct sockredir_sock);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sock_state SEC(".maps");

/* One entry per direction of every connection in the map, under the receiver's key; as many as sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct sockredir_key);
	__type(value, struct sockredir_flow);
	__uint(max_entries, SOCKREDIR_DEFAULT_MAX_SOCKETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flows SEC(".maps");

/* Server ports whose readers were seen reading in a way the redirect path breaks: later connections stay off. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sockredir_learn_key);
	__type(value, __u32);
	__uint(max_entries, SOCKREDIR_LEARNED_ENTRIES);
} learned SEC(".maps");

/* Keys in and verdicts out for the unmap program (run by detach with BPF_PROG_TEST_RUN). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sockredir_unmap_batch);
	__uint(max_entries, 1);
} unmap_batch SEC(".maps");

#endif
