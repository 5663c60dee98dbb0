/* tp_btf on sock:sock_recv_length (Linux 6.5+): every recvmsg's result, with the socket, through CO-RE. */
#include "trace_common.h"

/* TP_PROTO(struct sock *sk, int ret, int flags): the arguments as u64 slots. */
SEC("tp_btf/sock_recv_length")
int trace_recv_tp(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct socket *so = sk ? sk->sk_socket : 0;

	count_read(sk, so ? so->file : 0, (int)ctx[1]);
	return 0;
}
