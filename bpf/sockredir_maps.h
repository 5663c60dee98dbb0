/* The four map definitions (legacy "maps" section), included by every BPF object the loader accepts. */
#ifndef SOCKREDIR_MAPS_H
#define SOCKREDIR_MAPS_H

#include "helpers.h"
#include "sockredir_shared.h"

/* Legacy map definitions (section "maps"); see README for why not BTF ".maps". */
struct sockredir_map_def sock_hash SEC("maps") = {
	.type = BPF_MAP_TYPE_SOCKHASH,
	.key_size = sizeof(struct sockredir_key),
	/* 8 bytes: a lookup from user space returns the socket cookie. */
	.value_size = sizeof(__u64),
	.max_entries = SOCKREDIR_DEFAULT_MAX_SOCKETS,
};

struct sockredir_map_def counters SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = SOCKREDIR_COUNTER_MAX,
};

struct sockredir_map_def config SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct sockredir_config),
	.max_entries = 1,
};

/* Socket-local storage: the kernel requires BTF and BPF_F_NO_PREALLOC for it. */
struct sockredir_map_def path_state SEC("maps") = {
	.type = BPF_MAP_TYPE_SK_STORAGE,
	.key_size = sizeof(int),
	.value_size = sizeof(__u32),
	.max_entries = 0,
	.map_flags = BPF_F_NO_PREALLOC,
};

#endif
