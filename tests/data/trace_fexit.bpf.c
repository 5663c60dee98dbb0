/* fexit on sock_recvmsg (every kernel we support): its result, with the socket, through CO-RE. */
#include "trace_common.h"

/* int sock_recvmsg(struct socket *sock, struct msghdr *msg, int flags): three arguments, then the return value. */
SEC("fexit/sock_recvmsg")
int trace_recv_fexit(__u64 *ctx)
{
	struct socket *so = (struct socket *)ctx[0];

	count_read(so ? so->sk : 0, so ? so->file : 0, (int)ctx[3]);
	return 0;
}
