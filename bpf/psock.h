/* Whether a socket's psock holds redirected data no one has read yet, read from kernel structures by CO-RE. */
#ifndef SOCKREDIR_PSOCK_H
#define SOCKREDIR_PSOCK_H

#include "helpers.h"

/*
 * Local definitions of the kernel structures read, with only the fields used. preserve_access_index makes clang
 * record every access as a CO-RE relocation, which the loader resolves against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux): the offsets of struct sk_psock differ between 6.1, 6.12 and 6.18. The "___sr" flavour
 * suffix keeps these names apart from other local definitions of the same kernel types (tests/data/trace_common.h
 * has its own struct sock); CO-RE matches by the name before "___".
 */
struct list_head___sr {
	struct list_head___sr *next;
} __attribute__((preserve_access_index));

struct sk_buff_head___sr {
	__u32 qlen;
} __attribute__((preserve_access_index));

/* include/linux/skmsg.h */
struct sk_psock___sr {
	/* skbs redirected here by a stream verdict program (not ours, but the kernel frees them the same way) */
	struct sk_buff_head___sr ingress_skb;
	/* struct sk_msg redirected here by sk_msg programs with BPF_F_INGRESS: bytes the reader has not read yet */
	struct list_head___sr ingress_msg;
} __attribute__((preserve_access_index));

struct sock___sr {
	void *sk_user_data;
} __attribute__((preserve_access_index));

/*
 * include/net/sock.h: the low bits of sk_user_data are flags (SK_USER_DATA_NOCOPY 1, SK_USER_DATA_BPF 2,
 * SK_USER_DATA_PSOCK 4 in 6.1, 6.12 and 6.18); SK_USER_DATA_PSOCK says the pointer is a struct sk_psock.
 */
#define SR_SK_USER_DATA_PSOCK 4UL
#define SR_SK_USER_DATA_PTRMASK (~7UL)

/*
 * 1 when the psock of `sk` holds no redirected data (nothing unread: deleting the socket from a sockmap frees
 * nothing the reader still needs), 0 when it holds some, and 0 as well when it cannot tell (no psock, a read that
 * failed): the caller must then leave the socket alone. The kernel frees a psock's ingress queues when the psock
 * goes (sk_psock_drop -> sk_psock_destroy -> __sk_psock_zap_ingress).
 *
 * `sk` must be a pointer the verifier knows as a kernel struct sock or a structure that starts with one
 * (PTR_TO_BTF_ID: an iterator's ctx->sk, the struct tcp_sock of bpf_skc_to_tcp_sock()); it is taken as void * so
 * that any caller's local type of it will do. sk_user_data is read by a plain load, the psock by
 * bpf_probe_read_kernel (the verifier knows sk_user_data only as a number). Not atomic with the writers of the
 * queues: true at the instant of each read; with no redirect in flight to the socket, it stays true.
 */
static __always_inline int sr_psock_ingress_empty(const void *sk)
{
	struct list_head___sr *next = 0;
	struct sk_psock___sr *psock;
	unsigned long data;
	__u32 qlen = 1;

	if (!sk)
		return 0;
	data = (unsigned long)((const struct sock___sr *)sk)->sk_user_data;
	if (!(data & SR_SK_USER_DATA_PSOCK))
		return 0;
	psock = (struct sk_psock___sr *)(data & SR_SK_USER_DATA_PTRMASK);
	if (!psock)
		return 0;
	/* An empty list_head points at itself. */
	if (bpf_probe_read_kernel(&next, sizeof(next), &psock->ingress_msg.next) != 0)
		return 0;
	if (next != &psock->ingress_msg)
		return 0;
	if (bpf_probe_read_kernel(&qlen, sizeof(qlen), &psock->ingress_skb.qlen) != 0)
		return 0;
	return qlen == 0;
}

#endif
