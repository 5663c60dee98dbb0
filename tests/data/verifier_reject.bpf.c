/* A well-formed object the verifier must reject: sk_msg dereferences a map value without a NULL check. */
#include "helpers.h"
#include "sockredir_shared.h"
#include "sockredir_maps.h"

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
