/*
 * The kernel structures the programs read, with only the fields they use. clang records each access as a CO-RE
 * relocation (preserve_access_index) and the loader resolves the real offsets from the running kernel's BTF
 * (/sys/kernel/btf/vmlinux): they differ between 6.1, 6.12 and 6.18. No vmlinux.h: these few lines are the whole
 * dependency on the kernel's internals, and each is named in the README's "How it decides".
 */
#ifndef SOCKREDIR_KERNEL_H
#define SOCKREDIR_KERNEL_H

#include <linux/types.h>

struct file {
	unsigned int f_flags;
} __attribute__((preserve_access_index));

struct sock;

struct socket {
	struct file *file;
	struct sock *sk;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
	int sk_rcvlowat;
	int sk_peek_off; /* -1 unless SO_PEEK_OFF */
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 copied_seq; /* head of yet unread TCP data */
	__u32 write_seq;  /* tail(+1) of data held in the send buffer */
} __attribute__((preserve_access_index));

/* <fcntl.h> and <sys/socket.h> values on x86 and arm64 (the BPF target cannot include them). */
#define SR_O_NONBLOCK 04000
#define SR_MSG_OOB 0x1
#define SR_MSG_PEEK 0x2
#define SR_MSG_TRUNC 0x20
#define SR_MSG_DONTWAIT 0x40
#define SR_MSG_ERRQUEUE 0x2000
#define SR_EAGAIN 11
#define SR_SOL_SOCKET 1
#define SR_SOL_TCP 6
#define SR_SO_RCVLOWAT 18
#define SR_SO_PEEK_OFF 42
#define SR_TCP_INFO 11
#define SR_TCP_INQ 36

#endif
