/* For tools/bench only: the maps of bpf/sockredir_maps.h as BTF ".maps" definitions, which bpftool (libbpf 1.x) loads. */
#ifndef SOCKREDIR_MAPS_H
#define SOCKREDIR_MAPS_H

/*
 * libbpf 1.0 dropped legacy "maps" section definitions, so bpftool cannot load
 * build/sockredir.bpf.o. tools/bench copies bpf/sockredir.bpf.c next to this
 * file and compiles the copy: its #include "sockredir_maps.h" finds this header
 * first (same directory), everything else comes from bpf/. Types, sizes, flags
 * and the socket limit are the shared header's, so the maps are the same maps.
 */
#include "helpers.h"
#include "sockredir_shared.h"

/* libbpf's encoding of map attributes in BTF (bpf_helpers.h), without libbpf. */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* Sizes, not BTF types: the kernel takes no BTF value type for a sockhash. */
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

/* Socket-local storage: the kernel requires BTF key/value types and BPF_F_NO_PREALLOC. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} path_state SEC(".maps");

#endif
