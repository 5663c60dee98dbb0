/* Shared by the tracing test objects: a test socket's reads counted by its cookie, its file's flags read by CO-RE. */
#ifndef TRACE_COMMON_H
#define TRACE_COMMON_H

#include "helpers.h"

/*
 * Local definitions of the kernel structures read, with only the fields used: clang records each access as a
 * CO-RE relocation (preserve_access_index), and the loader resolves the real offsets from the running kernel's
 * BTF, which differ between 6.1, 6.12 and 6.18.
 */
struct file {
	unsigned int f_flags;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
	struct sock *sk;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

/* O_NONBLOCK of <fcntl.h> on x86 and arm64. */
#define TRACE_O_NONBLOCK 04000

/* One entry: the test writes the cookie of the socket to watch; the program counts that socket's reads. */
struct trace_counts {
	__u64 cookie;
	__u64 bytes;
	__u64 calls;
	__u64 nonblocking_calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct trace_counts);
	__uint(max_entries, 1);
} trace_counts SEC(".maps");

static __u64 (*bpf_get_socket_cookie)(void *sk) = (void *)BPF_FUNC_get_socket_cookie;

/* Counts one read of `ret` bytes on `sk` if it is the watched socket; `file` tells its O_NONBLOCK. */
static __always_inline void count_read(struct sock *sk, struct file *file, long ret)
{
	__u32 zero = 0;
	struct trace_counts *c = bpf_map_lookup_elem(&trace_counts, &zero);

	if (!c || ret <= 0 || !sk)
		return;
	if (bpf_get_socket_cookie(sk) != c->cookie)
		return;
	__sync_fetch_and_add(&c->bytes, ret);
	__sync_fetch_and_add(&c->calls, 1);
	if (file && (file->f_flags & TRACE_O_NONBLOCK))
		__sync_fetch_and_add(&c->nonblocking_calls, 1);
}

char _license[] SEC("license") = "GPL";

#endif
