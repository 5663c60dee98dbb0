/* A well-formed object the verifier must reject: sk_msg dereferences a map value without a NULL check. */
#include "helpers.h"
#include "sockredir_shared.h"

struct sockredir_map_def sock_hash SEC("maps") = {
	.type = BPF_MAP_TYPE_SOCKHASH,
	.key_size = sizeof(struct sockredir_key),
	.value_size = sizeof(__u64),
	.max_entries = 16,
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
struct sockredir_map_def path_state SEC("maps") = {
	.type = BPF_MAP_TYPE_SK_STORAGE,
	.key_size = sizeof(int),
	.value_size = sizeof(__u32),
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("sockops")
int sockredir_sockops(struct bpf_sock_ops *skops)
{
	return skops->op == 0;
}

SEC("sk_msg")
int sockredir_msg(struct sk_msg_md *msg)
{
	__u32 key = msg->size;
	__u64 *slot = bpf_map_lookup_elem(&counters, &key);

	*slot += 1; /* no NULL check: the verifier says "invalid mem access 'map_value_or_null'" */
	return SK_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
