/* sockredir data path: sock_ops fills the sockhash with same-host sockets, sk_msg redirects each message into the peer. */
#include "helpers.h"
#include "sockredir_shared.h"
#include "sockredir_maps.h"
#include "psock.h"

static __always_inline void count(__u32 index, __u64 value)
{
	__u64 *slot = bpf_map_lookup_elem(&counters, &index);

	/* Per-CPU, but sk_msg runs preemptible in process context: add atomically. */
	if (slot)
		__sync_fetch_and_add(slot, value);
}

/* Is (a0..a3) an IPv4-mapped IPv6 address (::ffff:a.b.c.d)? Words in network order. */
static __always_inline int is_v4_mapped(__u32 a0, __u32 a1, __u32 a2)
{
	return a0 == 0 && a1 == 0 && a2 == sr_bswap32(0x0000ffff);
}

/*
 * Fill addresses and family of a key from words in network byte order. An
 * AF_INET6 socket with IPv4-mapped addresses is keyed as AF_INET, like its peer.
 */
static __always_inline void key_set_addrs(struct sockredir_key *key, __u32 family,
					  const __u32 local[4], const __u32 remote[4])
{
	if (family == SOCKREDIR_AF_INET6 && is_v4_mapped(local[0], local[1], local[2]) &&
	    is_v4_mapped(remote[0], remote[1], remote[2])) {
		key->family = SOCKREDIR_AF_INET;
		key->local_ip[0] = local[3];
		key->remote_ip[0] = remote[3];
		return;
	}
	key->family = family;
	key->local_ip[0] = local[0];
	key->remote_ip[0] = remote[0];
	if (family == SOCKREDIR_AF_INET6) {
		key->local_ip[1] = local[1];
		key->local_ip[2] = local[2];
		key->local_ip[3] = local[3];
		key->remote_ip[1] = remote[1];
		key->remote_ip[2] = remote[2];
		key->remote_ip[3] = remote[3];
	}
}

/* Can the peer be on this host: a loopback remote address, or remote == local. */
static __always_inline int peer_is_local(const struct sockredir_key *key)
{
	if (key->family == SOCKREDIR_AF_INET) {
		/* 127.0.0.0/8; the first byte in memory is the most significant. */
		if ((key->remote_ip[0] & 0xff) == 127)
			return 1;
		return key->remote_ip[0] == key->local_ip[0];
	}
	if (key->remote_ip[0] == 0 && key->remote_ip[1] == 0 && key->remote_ip[2] == 0 &&
	    key->remote_ip[3] == sr_bswap32(1))
		return 1;
	return key->remote_ip[0] == key->local_ip[0] && key->remote_ip[1] == key->local_ip[1] &&
	       key->remote_ip[2] == key->local_ip[2] && key->remote_ip[3] == key->local_ip[3];
}

/* Is `port` (host byte order) set in the selection bitmap? port / 64 < SOCKREDIR_PORT_WORDS for any u16. */
static __always_inline int port_selected(const struct sockredir_config *cfg, __u16 port)
{
	return (cfg->ports[port >> 6] >> (port & 63)) & 1;
}

SEC("sockops")
int sockredir_sockops(struct bpf_sock_ops *skops)
{
	struct sockredir_key key;
	struct sockredir_config *cfg;
	__u32 local[4], remote[4];
	__u32 zero = 0;
	__u32 *path;
	struct bpf_sock *sk;
	__u32 family;

	/* Only the two "connection established" callbacks interest us. */
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	family = skops->family;
	if (family != SOCKREDIR_AF_INET && family != SOCKREDIR_AF_INET6)
		return 1;

	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memset(local, 0, sizeof(local));
	__builtin_memset(remote, 0, sizeof(remote));
	if (family == SOCKREDIR_AF_INET) {
		local[0] = skops->local_ip4;   /* network byte order */
		remote[0] = skops->remote_ip4; /* network byte order */
	} else {
		local[0] = skops->local_ip6[0]; /* network byte order, word by word */
		local[1] = skops->local_ip6[1];
		local[2] = skops->local_ip6[2];
		local[3] = skops->local_ip6[3];
		remote[0] = skops->remote_ip6[0];
		remote[1] = skops->remote_ip6[1];
		remote[2] = skops->remote_ip6[2];
		remote[3] = skops->remote_ip6[3];
	}
	key_set_addrs(&key, family, local, remote);
	if (!peer_is_local(&key))
		return 1;

	key.netns_cookie = bpf_get_netns_cookie(skops);
	/* local_port: host byte order in the low 16 bits. */
	key.local_port = (__u16)skops->local_port;
	/* remote_port: network byte order in the upper 16 bits of the u32. */
	key.remote_port = (__u16)sr_bswap32(skops->remote_port);

	/* attach --ports: a connection of no selected port stays on TCP and costs nothing per message. */
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && (cfg->flags & SOCKREDIR_F_PORTS) && !port_selected(cfg, key.local_port) &&
	    !port_selected(cfg, key.remote_port))
		return 1;

	/*
	 * Create the socket's path state before the socket can redirect: the
	 * sk_msg side relies on it to never switch a connection from TCP to
	 * redirection. A socket without it stays off the map (and on TCP).
	 */
	sk = skops->sk;
	if (!sk) {
		count(SOCKREDIR_INSERT_FAILED, 1);
		return 1;
	}
	path = bpf_sk_storage_get(&path_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!path) {
		count(SOCKREDIR_INSERT_FAILED, 1);
		return 1;
	}
	/* Data already sent by TCP (TCP Fast Open in the SYN): stay on TCP. */
	if (skops->data_segs_out)
		*path = SOCKREDIR_PATH_TCP;

	if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST) == 0)
		count(SOCKREDIR_SOCKETS_ADDED, 1);
	else
		count(SOCKREDIR_INSERT_FAILED, 1);
	return 1;
}

SEC("sk_msg")
int sockredir_msg(struct sk_msg_md *msg)
{
	struct sockredir_key key;
	struct sockredir_config *cfg;
	__u32 local[4], remote[4];
	__u32 zero = 0;
	__u32 *path;
	__u32 family;
	struct bpf_sock *sk = msg->sk;

	/* Created by sock_ops before the socket entered the map; absent means: do not touch. */
	path = bpf_sk_storage_get(&path_state, sk, 0, 0);
	if (!path || *path == SOCKREDIR_PATH_TCP)
		goto pass;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && (cfg->flags & SOCKREDIR_F_DRAINING))
		goto to_tcp;

	family = msg->family;
	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memset(local, 0, sizeof(local));
	__builtin_memset(remote, 0, sizeof(remote));
	/* The peer's key: our remote is its local and the other way round. */
	if (family == SOCKREDIR_AF_INET) {
		local[0] = msg->remote_ip4; /* network byte order */
		remote[0] = msg->local_ip4; /* network byte order */
	} else {
		local[0] = msg->remote_ip6[0]; /* network byte order, word by word */
		local[1] = msg->remote_ip6[1];
		local[2] = msg->remote_ip6[2];
		local[3] = msg->remote_ip6[3];
		remote[0] = msg->local_ip6[0];
		remote[1] = msg->local_ip6[1];
		remote[2] = msg->local_ip6[2];
		remote[3] = msg->local_ip6[3];
	}
	key_set_addrs(&key, family, local, remote);
	key.netns_cookie = bpf_get_netns_cookie(msg);
	/* remote_port: network byte order in the upper 16 bits; local_port: host order. */
	key.local_port = (__u16)sr_bswap32(msg->remote_port);
	key.remote_port = (__u16)msg->local_port;

	if (bpf_msg_redirect_hash(msg, &sock_hash, &key, BPF_F_INGRESS) == SK_PASS) {
		count(SOCKREDIR_MSG_REDIRECTED, 1);
		count(SOCKREDIR_BYTES_REDIRECTED, msg->size);
		return SK_PASS;
	}
to_tcp:
	/* No peer (yet), or draining: this socket's data takes TCP from now on, for good. */
	*path = SOCKREDIR_PATH_TCP;
pass:
	count(SOCKREDIR_MSG_PASSED, 1);
	return SK_PASS;
}

/*
 * The two programs below are optional to the loader (app::check_contract): built with SOCKREDIR_NO_EVICTION, the
 * object has neither, as an old build has not (the e2e test of detach's fallback loads that build).
 */
#ifndef SOCKREDIR_NO_EVICTION

/*
 * The context of a sockmap iterator (net/core/sock_map.c struct bpf_iter__sockmap): four pointers, each in a u64
 * slot (__bpf_md_ptr), the same on every kernel. key and sk are NULL in the last call, after the last element.
 */
struct bpf_iter_meta___sr {
	void *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__sockmap {
	struct bpf_iter_meta___sr *meta;
	void *map;
	struct sockredir_key *key; /* key_size bytes, read-only; 8-byte aligned (struct bpf_shtab_elem) */
	void *sk;  /* the kernel's struct sock */
};

/*
 * Detach's eviction (run with BPF_ITER_CREATE over the sockhash, after the draining flag stopped every redirect):
 * takes out of the map every socket whose psock holds no unread redirected data, which gives it back the plain TCP
 * socket operations and drops its references to our programs and maps. A socket with unread data stays: the
 * kernel would free the data with its psock; detach runs this again until the reader has read it, or gives up and
 * says so. May delete: the verifier allows map_delete_elem on a sockhash to BPF_TRACE_ITER programs
 * (may_update_sockmap), and the iterator holds no socket lock.
 */
SEC("iter/sockmap")
int sockredir_evict(struct bpf_iter__sockmap *ctx)
{
	struct sockredir_evict_record rec;
	void *sk = ctx->sk;

	if (!ctx->key || !sk)
		return 0;
	__builtin_memset(&rec, 0, sizeof(rec));
	/* The helper takes no pointer into the context: the key goes through the stack. */
	rec.key = *ctx->key;
	if (!sr_psock_ingress_empty(sk))
		rec.verdict = SOCKREDIR_EVICT_UNREAD;
	else if (bpf_map_delete_elem(&sock_hash, &rec.key) != 0)
		rec.verdict = SOCKREDIR_EVICT_DELETE_FAILED;
	else
		return 0;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/*
 * The same hand-back where the kernel refuses the iterator (this project's 6.18 machines refuse iter/sockmap with
 * EPERM, as they refuse fentry): never attached, run by detach with BPF_PROG_TEST_RUN on a batch of keys it listed
 * from the sockhash. A sched_cls program may look a socket up in a sockhash (a referenced struct bpf_sock), reach
 * its struct tcp_sock through bpf_skc_to_tcp_sock, and delete from a sockhash (may_update_sockmap).
 */
SEC("tc")
int sockredir_unmap(struct __sk_buff *skb)
{
	struct sockredir_unmap_batch *batch;
	__u32 zero = 0;
	__u32 i;

	(void)skb; /* the test run's packet: unused */
	batch = bpf_map_lookup_elem(&unmap_batch, &zero);
	if (!batch)
		return 0;
	for (i = 0; i < SOCKREDIR_UNMAP_BATCH; i++) {
		struct sockredir_key key;
		struct bpf_sock *sk;
		int empty;

		if (i >= batch->count)
			break;
		key = batch->keys[i];
		sk = bpf_map_lookup_elem(&sock_hash, &key);
		if (!sk) {
			batch->verdicts[i] = SOCKREDIR_EVICT_GONE;
			continue;
		}
		empty = sr_psock_ingress_empty(bpf_skc_to_tcp_sock(sk));
		bpf_sk_release(sk);
		if (!empty)
			batch->verdicts[i] = SOCKREDIR_EVICT_UNREAD;
		else if (bpf_map_delete_elem(&sock_hash, &key) != 0)
			batch->verdicts[i] = SOCKREDIR_EVICT_DELETE_FAILED;
		else
			batch->verdicts[i] = SOCKREDIR_EVICT_TAKEN_OUT;
	}
	return 0;
}

#endif /* SOCKREDIR_NO_EVICTION */

char _license[] SEC("license") = "Dual MIT/GPL";
