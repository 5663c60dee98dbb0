/*
 * sockredir data path. sock_ops puts same-host sockets into the sockhash; sk_msg hands each message to the peer
 * socket -- but only where the application cannot tell: a direction starts on TCP and is redirected once its reader
 * has been seen reading in a way the redirect path serves exactly as TCP does (the receive-path observer, below)
 * and has read every byte sent by TCP; it goes back to TCP when the reader lags by more than --max-inflight, and
 * for good, with both sockets taken out of the map, when the reader reads in a way the redirect path breaks
 * (kernel-notes.md sections 1, 2 and 7).
 */
#include "helpers.h"
#include "kernel.h"
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

/* Hand the socket's redirected messages and bytes not counted yet to the host-wide counters. Under the socket's
 * lock (sk_msg, sock_ops), as every writer of them. */
static __always_inline void flush_pending(struct sockredir_sock *me)
{
	if (!me->pending_msgs)
		return;
	count(SOCKREDIR_MSG_REDIRECTED, me->pending_msgs);
	count(SOCKREDIR_BYTES_REDIRECTED, me->pending_bytes);
	me->pending_msgs = 0;
	me->pending_bytes = 0;
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


/* Which side of a connection reads what it learns: the server's end is known by its (listening) local port, the
 * client's end by its peer's port. Both ends of one connection share the port; `side` tells them apart. */
static __always_inline void learn_key_of(const struct sockredir_key *key, __u32 passive, struct sockredir_learn_key *lk)
{
	lk->netns_cookie = key->netns_cookie;
	lk->port = passive ? key->local_port : key->remote_port;
	lk->side = passive ? 1 : 0;
	lk->reserved = 0;
}

static __always_inline int established(struct bpf_sock_ops *skops, __u32 passive)
{
	struct sockredir_learn_key lk;
	struct sockredir_flow flow;
	struct sockredir_sock *me;
	struct sockredir_config *cfg;
	struct sockredir_key key, peer;
	__u32 local[4], remote[4];
	struct tcp_sock *tp;
	struct bpf_sock *sk;
	__u32 zero = 0;
	__u32 family;
	__u32 *bad;

	family = skops->family;
	if (family != SOCKREDIR_AF_INET && family != SOCKREDIR_AF_INET6)
		return 1;

	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memset(&peer, 0, sizeof(peer));
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
	key_set_addrs(&peer, family, remote, local);

	key.netns_cookie = bpf_get_netns_cookie(skops);
	/* local_port: host byte order in the low 16 bits. */
	key.local_port = (__u16)skops->local_port;
	/* remote_port: network byte order in the upper 16 bits of the u32. */
	key.remote_port = (__u16)sr_bswap32(skops->remote_port);
	peer.netns_cookie = key.netns_cookie;
	peer.local_port = key.remote_port;
	peer.remote_port = key.local_port;

	/* attach --ports: a connection of no selected port stays on TCP and costs nothing per message. */
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && (cfg->flags & SOCKREDIR_F_PORTS) && !port_selected(cfg, key.local_port) &&
	    !port_selected(cfg, key.remote_port))
		return 1;

	sk = skops->sk;
	if (!sk)
		goto failed;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		goto failed;

	/*
	 * A client socket in blocking mode would meet tcp_bpf_recvmsg()'s EAGAIN on any wake-up without data
	 * (kernel-notes.md section 1): keep it off the map. A server's end has no file yet (accept() has not run);
	 * its reads are watched by the observer instead.
	 */
	if (!passive) {
		struct socket *so = ((struct sock *)tp)->sk_socket;
		struct file *f = so ? so->file : 0;

		if (!f || !(f->f_flags & SR_O_NONBLOCK)) {
			count(SOCKREDIR_SKIPPED_BLOCKING, 1);
			return 1;
		}
	}
	/*
	 * A socket that reads with a low-water mark or a peek offset (set before connect, or inherited by an accepted
	 * socket from its listener) would have both ignored for redirected bytes: it stays on TCP.
	 */
	if (((struct sock *)tp)->sk_rcvlowat > 1 || ((struct sock *)tp)->sk_peek_off >= 0) {
		count(SOCKREDIR_SKIPPED_OPTIONS, 1);
		return 1;
	}
	/*
	 * A server's reads are its program's: one that read a connection in blocking mode reads the next ones so too,
	 * and keeping them off spares them the first blocking read on tcp_bpf's path. A client's are not (one client
	 * of a port may block, the next not: redis-benchmark's first connection is hiredis' blocking one): a client
	 * is judged by its own socket.
	 */
	learn_key_of(&key, passive, &lk);
	bad = passive ? bpf_map_lookup_elem(&learned, &lk) : 0;
	if (bad && *bad == SOCKREDIR_LEARNED_BAD) {
		count(SOCKREDIR_SKIPPED_LEARNED, 1);
		return 1;
	}

	/* The socket's state and the flow into it exist before it can redirect or be redirected to. */
	me = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!me)
		goto failed;
	me->key = key;
	me->peer = peer;
	me->path = SOCKREDIR_PATH_TCP;
	me->flags = passive ? SOCKREDIR_SOCK_PASSIVE : 0;
	me->copied_seq = tp->copied_seq;
	__builtin_memset(&flow, 0, sizeof(flow));
	flow.rx_copied_seq = tp->copied_seq;
	flow.port = lk.port;
	flow.side = lk.side;
	if (bpf_map_update_elem(&flows, &key, &flow, BPF_ANY) != 0)
		goto failed;
	/*
	 * Every segment it sends (data or ACK) runs sock_ops: where a socket that must leave the map can (sk_msg and
	 * the observer may not delete). A redirected connection sends almost none. State changes: cleanup.
	 */
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);

	if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST) == 0) {
		count(SOCKREDIR_SOCKETS_ADDED, 1);
		return 1;
	}
	bpf_map_delete_elem(&flows, &key);
failed:
	count(SOCKREDIR_INSERT_FAILED, 1);
	return 1;
}

/*
 * A socket marked for eviction leaves the map on its next callback once nothing redirected to it is unread (the
 * kernel would free it) and the direction into it has been closed long enough for any sendmsg that saw it open to
 * have enqueued its message.
 */
static __always_inline void maybe_evict(struct bpf_sock_ops *skops, struct sockredir_sock *me)
{
	struct sockredir_flow *flow;
	struct tcp_sock *tp;

	if (!(me->flags & SOCKREDIR_SOCK_EVICT) || (me->flags & SOCKREDIR_SOCK_EVICTED))
		return;
	/* Nothing was ever redirected to it: no sendmsg can be between its verdict and the enqueue. */
	flow = bpf_map_lookup_elem(&flows, &me->key);
	if (flow && flow->redirected_msgs != 0 && bpf_ktime_get_ns() - flow->never_ns < SOCKREDIR_EVICT_DELAY_NS)
		return;
	if (!skops->sk)
		return;
	tp = bpf_skc_to_tcp_sock(skops->sk);
	if (!tp || !sr_psock_ingress_empty(tp))
		return;
	if (bpf_map_delete_elem(&sock_hash, &me->key) == 0) {
		/* Nothing redirected to it is unread, and nothing more will be: the observer, which counts the reads,
		 * stops looking at it here. */
		if (flow) {
			flow->read_bytes = flow->redirected_bytes;
			flow->read_msgs = flow->redirected_msgs;
		}
		me->flags |= SOCKREDIR_SOCK_EVICTED;
		count(SOCKREDIR_SOCKETS_EVICTED, 1);
		/* Back to plain TCP: no more callbacks per segment, only the close. */
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	}
}

SEC("sockops")
int sockredir_sockops(struct bpf_sock_ops *skops)
{
	struct sockredir_sock *me;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		return established(skops, skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB);
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		/* Not from tcp_current_mss() inside a sendmsg: only where a segment is really being built. */
		if (skops->args[0] & BPF_WRITE_HDR_TCP_CURRENT_MSS)
			return 1;
		break;
	case BPF_SOCK_OPS_STATE_CB:
		break;
	default:
		return 1;
	}
	if (!skops->sk)
		return 1;
	me = bpf_sk_storage_get(&sock_state, skops->sk, 0, 0);
	if (!me)
		return 1;
	flush_pending(me);
	if (skops->op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE) {
		/* The sockhash forgets a closed socket by itself; the flow into it is ours to forget. */
		bpf_map_delete_elem(&flows, &me->key);
		return 1;
	}
	maybe_evict(skops, me);
	return 1;
}

/* Close both directions of a connection to redirection, for good, and mark the socket to leave the map. Whether it
 * was open until now. */
static __always_inline int close_connection(struct sockredir_sock *me, struct sockredir_flow *in, __u32 why)
{
	struct sockredir_flow *out = bpf_map_lookup_elem(&flows, &me->peer);
	__u64 now = bpf_ktime_get_ns();

	me->flags |= SOCKREDIR_SOCK_EVICT;
	/* Its own sends must take TCP too: the ACKs they bring back are where the socket can leave the map. On every
	 * call: the flow out of it may not have existed at the first (its peer's end established later). */
	if (out && !out->never) {
		out->never_ns = now;
		out->reason = why;
		out->never = 1;
	}
	if (in->never)
		return 0;
	in->never_ns = now;
	in->reason = why;
	in->never = 1;
	count(why, 1);
	return 1;
}

/*
 * The adaptive path. A redirected read that finds several messages queued means the reader lags behind a stream of
 * writes: each redirected write woke it once and cost a message of its own, where TCP would have coalesced them
 * into a few segments and one wake-up. Enough of those in a row move the direction to TCP for good (the bytes keep
 * their order: the reader drains the redirect queue first).
 */
static __always_inline void maybe_demote(struct sockredir_sock *me, struct sockredir_flow *flow, int ret)
{
	__u64 msgs = flow->redirected_msgs, bytes = flow->redirected_bytes;
	struct sockredir_config *cfg;
	__u32 zero = 0;

	if (flow->never || msgs < SOCKREDIR_DEMOTE_MIN_MSGS)
		return;
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || (cfg->flags & SOCKREDIR_F_NO_ADAPTIVE))
		return;
	if ((__u64)ret * msgs < SOCKREDIR_DEMOTE_BATCH * bytes) {
		flow->batched_reads = 0;
		return;
	}
	if (++flow->batched_reads >= SOCKREDIR_DEMOTE_READS)
		close_connection(me, flow, SOCKREDIR_DEMOTED);
}

/*
 * The receive-path observer: every recvmsg of a socket in our map, after the fact, with the flags the kernel saw.
 * It proves a reader compatible (a non-blocking read, no SO_PEEK_OFF, SO_RCVLOWAT, MSG_OOB or MSG_TRUNC: what
 * tcp_bpf_recvmsg() serves exactly as tcp_recvmsg() does), closes the connection to redirection otherwise, and
 * counts what the reader consumed of the redirected bytes (flow control).
 */
static __always_inline int observe(struct sock *sk, int ret, int flags)
{
	struct sockredir_learn_key lk;
	struct sockredir_flow *flow;
	struct sockredir_sock *me;
	struct tcp_sock *tp;
	__u32 bad = SOCKREDIR_LEARNED_BAD;
	__u32 why = 0;
	__u32 copied;

	if (!sk || (flags & SR_MSG_ERRQUEUE))
		return 0;
	me = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	/* Out of the map, it reads as TCP serves it, and every redirected byte was read (maybe_evict). */
	if (!me || (me->flags & SOCKREDIR_SOCK_EVICTED))
		return 0;
	if (!(flags & SR_MSG_DONTWAIT))
		why = SOCKREDIR_READER_BLOCKING;
	else if (sk->sk_peek_off >= 0)
		why = SOCKREDIR_READER_PEEK_OFF;
	else if (sk->sk_rcvlowat > 1)
		why = SOCKREDIR_READER_LOWAT;
	else if (flags & (SR_MSG_OOB | SR_MSG_TRUNC))
		why = SOCKREDIR_READER_FLAGS;
	/* A compatible read that returned nothing (an event loop's last read, EAGAIN; end of stream) proves, counts
	 * and moves nothing: no lookup. */
	if (!why && ret <= 0)
		return 0;
	flow = bpf_map_lookup_elem(&flows, &me->key);
	tp = bpf_skc_to_tcp_sock(sk);
	if (!flow || !tp)
		return 0;

	if (why == SOCKREDIR_READER_BLOCKING && ret == -SR_EAGAIN)
		count(SOCKREDIR_EAGAIN_SEEN, 1);
	if (why) {
		if (close_connection(me, flow, why) && (me->flags & SOCKREDIR_SOCK_PASSIVE)) {
			learn_key_of(&me->key, 1, &lk);
			bpf_map_update_elem(&learned, &lk, &bad, BPF_ANY);
		}
	} else if (ret > 0 && !flow->reader_ok) {
		/* Proven by a read that returned data: a non-blocking recv() that met EAGAIN proves nothing (haproxy's
		 * first reads do, then it splices, and splice cannot see redirected bytes). */
		flow->reader_ok = 1;
	}

	/* A connection closed to redirection from the other end (its sender, a hook): this socket leaves the map too. */
	if (flow->never)
		me->flags |= SOCKREDIR_SOCK_EVICT;
	/* It read something: what it writes next answers it, and is no stream. */
	if (ret > 0) {
		me->unanswered = 0;
		me->run_bytes = 0;
	}

	copied = tp->copied_seq;
	if (ret > 0 && !(flags & SR_MSG_PEEK)) {
		/* tcp_bpf_recvmsg() serves a read from the redirect queue or from TCP's, never both: TCP's moves
		 * copied_seq. */
		if (copied == me->copied_seq) {
			__sync_fetch_and_add(&flow->read_bytes, ret);
			__sync_fetch_and_add(&flow->read_msgs, 1);
			maybe_demote(me, flow, ret);
		}
		me->copied_seq = copied;
	}
	/* Every redirected byte read: so is every message (read_msgs is a lower bound until then). */
	if (flow->read_bytes >= flow->redirected_bytes)
		flow->read_msgs = flow->redirected_msgs;
	flow->rx_copied_seq = copied;
	return 0;
}

/*
 * The option hooks. setsockopt runs before the kernel applies the option: a socket that asks for a low-water mark, a
 * peek offset or TCP_INQ's control message (which tcp_bpf_recvmsg() does not serve for redirected bytes) closes its
 * connection to redirection there, so every byte sent after the call takes TCP and is read as TCP serves it. Only a
 * message a sender had already redirected and its reader has not read yet is served by the redirect path.
 */
SEC("cgroup/setsockopt")
int sockredir_setsockopt(struct bpf_sockopt *ctx)
{
	struct sockredir_learn_key lk;
	struct sockredir_flow *flow;
	struct sockredir_sock *me;
	__u32 bad = SOCKREDIR_LEARNED_BAD;
	__s32 *value = ctx->optval;
	__u32 why = 0;

	if (ctx->optlen < (int)sizeof(*value) || (void *)(value + 1) > ctx->optval_end)
		return 1;
	if (ctx->level == SR_SOL_SOCKET && ctx->optname == SR_SO_RCVLOWAT && *value > 1)
		why = SOCKREDIR_READER_LOWAT;
	else if (ctx->level == SR_SOL_SOCKET && ctx->optname == SR_SO_PEEK_OFF && *value >= 0)
		why = SOCKREDIR_READER_PEEK_OFF;
	else if (ctx->level == SR_SOL_TCP && ctx->optname == SR_TCP_INQ && *value != 0)
		why = SOCKREDIR_READER_INQ;
	if (!why || !ctx->sk)
		return 1;
	me = bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
	if (!me)
		return 1;
	flow = bpf_map_lookup_elem(&flows, &me->key);
	if (!flow)
		return 1;
	if (close_connection(me, flow, why) && (me->flags & SOCKREDIR_SOCK_PASSIVE)) {
		learn_key_of(&me->key, 1, &lk);
		bpf_map_update_elem(&learned, &lk, &bad, BPF_ANY);
	}
	return 1;
}

/* Add v to the u32 or u64 at `off` of what getsockopt returns, when the caller's struct tcp_info is that long. */
#define SR_TCPI_ADD(type, off, v)                                                                                  \
	do {                                                                                                       \
		if (len >= (off) + (int)sizeof(type) && info + (off) + sizeof(type) <= end)                        \
			*(type *)(info + (off)) += (type)(v);                                                      \
	} while (0)

/*
 * getsockopt(TCP_INFO) runs this after the kernel filled the caller's struct tcp_info: the bytes and messages
 * redirected each way are added to TCP's byte and segment counters (one message, one segment), so that a monitor
 * or a load balancer sees the traffic it would see on plain TCP.
 */
SEC("cgroup/getsockopt")
int sockredir_getsockopt(struct bpf_sockopt *ctx)
{
	struct sockredir_flow *in, *out;
	struct sockredir_sock *me;
	__u8 *info = ctx->optval;
	__u8 *end = ctx->optval_end;
	int len = ctx->optlen;

	if (ctx->level != SR_SOL_TCP || ctx->optname != SR_TCP_INFO || ctx->retval != 0 || !ctx->sk)
		return 1;
	me = bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
	if (!me)
		return 1;
	out = bpf_map_lookup_elem(&flows, &me->peer);
	if (out && out->redirected_msgs) {
		SR_TCPI_ADD(__u64, SOCKREDIR_TCPI_BYTES_ACKED, out->redirected_bytes);
		SR_TCPI_ADD(__u32, SOCKREDIR_TCPI_SEGS_OUT, out->redirected_msgs);
		SR_TCPI_ADD(__u32, SOCKREDIR_TCPI_DATA_SEGS_OUT, out->redirected_msgs);
		SR_TCPI_ADD(__u64, SOCKREDIR_TCPI_BYTES_SENT, out->redirected_bytes);
	}
	in = bpf_map_lookup_elem(&flows, &me->key);
	if (in && in->redirected_msgs) {
		SR_TCPI_ADD(__u64, SOCKREDIR_TCPI_BYTES_RECEIVED, in->redirected_bytes);
		SR_TCPI_ADD(__u32, SOCKREDIR_TCPI_SEGS_IN, in->redirected_msgs);
		SR_TCPI_ADD(__u32, SOCKREDIR_TCPI_DATA_SEGS_IN, in->redirected_msgs);
	}
	return 1;
}
#undef SR_TCPI_ADD

/* sock:sock_recv_length (Linux 6.5+), fired by sock_recvmsg() for every socket: TP_PROTO(sk, ret, flags). */
SEC("tp_btf/sock_recv_length")
int sockredir_observe_tp(__u64 *ctx)
{
	return observe((struct sock *)ctx[0], (int)ctx[1], (int)ctx[2]);
}

#ifndef SOCKREDIR_NO_FEXIT
/*
 * The first choice where the kernel attaches fexit programs: tcp_bpf_recvmsg(sk, msg, len, flags, addr_len)
 * returning ret, the recvmsg of a TCP socket in a sockmap. Only sockredir's sockets (and those of other sockmaps)
 * read through it, so every other read of the host costs nothing, where the tracepoint below and sock_recvmsg run
 * the observer on every read of every socket.
 */
SEC("fexit/tcp_bpf_recvmsg")
int sockredir_observe_map(__u64 *ctx)
{
	return observe((struct sock *)ctx[0], (int)ctx[5], (int)ctx[3]);
}

/* The same where that tracepoint does not exist (6.1): sock_recvmsg(sock, msg, flags) returning ret. */
SEC("fexit/sock_recvmsg")
int sockredir_observe_fexit(__u64 *ctx)
{
	struct socket *so = (struct socket *)ctx[0];

	return observe(so ? so->sk : 0, (int)ctx[3], (int)ctx[2]);
}
#endif

SEC("sk_msg")
int sockredir_msg(struct sk_msg_md *msg)
{
	struct sockredir_config *cfg;
	struct sockredir_flow *flow;
	struct sockredir_sock *me;
	struct tcp_sock *tp;
	__u64 queued, cost;
	__u32 zero = 0;
	__u32 why;

	/* Made by sock_ops before the socket entered the map; absent means: not ours, do not touch. */
	me = bpf_sk_storage_get(&sock_state, msg->sk, 0, 0);
	if (!me) {
		count(SOCKREDIR_MSG_PASSED, 1);
		return SK_PASS;
	}
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || (cfg->flags & SOCKREDIR_F_DRAINING)) {
		why = SOCKREDIR_PASS_DRAINING;
		goto tcp;
	}
	flow = bpf_map_lookup_elem(&flows, &me->peer);
	if (!flow) {
		/* A server's end is established after its client's: no flow now means a client that stays off the map
		 * (blocking, another cgroup). Alone in the map the socket gains nothing and keeps tcp_bpf's reads. A
		 * client's end may send before its server's end is established: it waits. */
		if (me->flags & SOCKREDIR_SOCK_PASSIVE)
			me->flags |= SOCKREDIR_SOCK_EVICT;
		why = SOCKREDIR_PASS_NO_PEER;
		goto tcp;
	}
	if (flow->never) {
		why = flow->reason == SOCKREDIR_DEMOTED ? SOCKREDIR_PASS_DEMOTED : SOCKREDIR_PASS_INCOMPATIBLE;
		me->flags |= SOCKREDIR_SOCK_EVICT;
		goto tcp;
	}
	/* A run of small writes that nobody answers: a stream, which TCP carries faster. */
	if (me->unanswered >= SOCKREDIR_DEMOTE_RUN && !(cfg->flags & SOCKREDIR_F_NO_ADAPTIVE)) {
		if (me->run_bytes <= (__u64)SOCKREDIR_DEMOTE_RUN * SOCKREDIR_DEMOTE_MAX_AVG) {
			struct sockredir_flow *in = bpf_map_lookup_elem(&flows, &me->key);

			if (in) {
				close_connection(me, in, SOCKREDIR_DEMOTED);
				why = SOCKREDIR_PASS_DEMOTED;
				goto tcp;
			}
		}
		me->unanswered = 0;
		me->run_bytes = 0;
	}
	/*
	 * Flow control: what the reader has not read yet, each message with the kernel memory it holds, stays
	 * within --max-inflight. The sender spends a credit and looks at the reader's progress (another CPU's cache
	 * line) only when it runs out: the reader only ever lowers what is queued, so the bound holds.
	 */
	cost = msg->size + SOCKREDIR_MSG_COST;
	if (me->credit < cost) {
		__u64 bytes = flow->redirected_bytes, msgs = flow->redirected_msgs;
		__u64 read_bytes = flow->read_bytes, read_msgs = flow->read_msgs;

		/* The observer's counts race the sender's (two readers, a stale resync): never below zero. */
		queued = (bytes > read_bytes ? bytes - read_bytes : 0) +
			 (msgs > read_msgs ? msgs - read_msgs : 0) * SOCKREDIR_MSG_COST;
		if (queued + cost > cfg->max_inflight) {
			me->credit = 0;
			why = SOCKREDIR_PASS_HELD;
			goto tcp;
		}
		me->credit = cfg->max_inflight - queued;
	}
	if (me->path != SOCKREDIR_PATH_REDIRECT) {
		if (!flow->reader_ok) {
			why = SOCKREDIR_PASS_UNPROVEN;
			goto tcp;
		}
		/*
		 * From TCP to redirection only when the reader has read every byte this socket ever sent by TCP
		 * (same sequence space: its copied_seq is our write_seq) and every redirected one: otherwise the
		 * reader, which drains the redirect queue first, would reorder them.
		 */
		tp = bpf_skc_to_tcp_sock(msg->sk);
		if (!tp || tp->write_seq != flow->rx_copied_seq || flow->read_bytes != flow->redirected_bytes) {
			why = SOCKREDIR_PASS_CATCHING_UP;
			goto tcp;
		}
	}
	if (bpf_msg_redirect_hash(msg, &sock_hash, &me->peer, BPF_F_INGRESS) != SK_PASS) {
		why = SOCKREDIR_PASS_NO_PEER;
		goto tcp;
	}
	if (me->path != SOCKREDIR_PATH_REDIRECT) {
		me->path = SOCKREDIR_PATH_REDIRECT;
		count(SOCKREDIR_PROMOTED, 1);
	}
	/* Only this socket's sendmsg writes these, under its socket lock. */
	flow->redirected_bytes += msg->size;
	flow->redirected_msgs += 1;
	me->credit -= cost;
	me->unanswered += 1;
	me->run_bytes += msg->size;
	/* The first message right away (status shows at once that a connection is redirected), then in batches. */
	me->pending_msgs += 1;
	me->pending_bytes += msg->size;
	if (me->pending_msgs >= SOCKREDIR_COUNT_BATCH || flow->redirected_msgs == 1)
		flush_pending(me);
	return SK_PASS;
tcp:
	me->path = SOCKREDIR_PATH_TCP;
	flush_pending(me);
	count(SOCKREDIR_MSG_PASSED, 1);
	count(why, 1);
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
