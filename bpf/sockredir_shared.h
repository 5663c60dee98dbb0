/* The map layout shared by the BPF programs and the loader: one definition, so the two can never disagree. */
#ifndef SOCKREDIR_SHARED_H
#define SOCKREDIR_SHARED_H

#include <linux/types.h>

/*
 * Address families as the kernel reports them in bpf_sock_ops.family and
 * sk_msg_md.family. The BPF target cannot include <sys/socket.h> (glibc has no
 * BPF stubs), so they are stated here once; the loader static_asserts them
 * against AF_INET / AF_INET6 from <sys/socket.h>.
 */
#define SOCKREDIR_AF_INET 2
#define SOCKREDIR_AF_INET6 10

/*
 * Key of one socket in the sockhash. 48 bytes, no padding (the BPF side zeroes
 * it anyway). The sk_msg program builds the key of the *peer* by swapping
 * local and remote.
 *   netns_cookie  bpf_get_netns_cookie(): two namespaces can hold identical
 *                 4-tuples; the cookie keeps their data apart.
 *   family        SOCKREDIR_AF_INET also for an AF_INET6 socket whose addresses
 *                 are IPv4-mapped (::ffff:a.b.c.d), so that a dual-stack
 *                 server socket and its IPv4 client find each other.
 *   local_port    host byte order.
 *   remote_port   host byte order (the context holds it in network order).
 *   local_ip      network byte order; IPv4 in [0], [1..3] zero.
 *   remote_ip     network byte order; IPv4 in [0], [1..3] zero.
 */
struct sockredir_key {
	__u64 netns_cookie;
	__u32 family;
	__u16 local_port;
	__u16 remote_port;
	__u32 local_ip[4];
	__u32 remote_ip[4];
};

/* Indexes into the per-CPU "counters" array (values are __u64). */
enum sockredir_counter {
	SOCKREDIR_SOCKETS_ADDED = 0,   /* sockets put into the sockhash */
	SOCKREDIR_INSERT_FAILED = 1,   /* bpf_sock_hash_update() refused (map full, ...) */
	SOCKREDIR_MSG_REDIRECTED = 2,  /* sendmsg calls handed to the peer socket */
	SOCKREDIR_BYTES_REDIRECTED = 3,
	SOCKREDIR_MSG_PASSED = 4,      /* sendmsg calls left on the TCP/IP path */
	SOCKREDIR_COUNTER_MAX = 5,
};

/* config.ports: one bit per TCP port, 64 ports per word. */
#define SOCKREDIR_PORT_WORDS 1024

/*
 * Value of the single-entry "config" array. sock_ops reads it once per new
 * connection (the port selection), sk_msg once per message (draining).
 */
struct sockredir_config {
	__u32 flags;
	__u32 reserved; /* zero; keeps ports 8-byte aligned */
	/* With SOCKREDIR_F_PORTS: bit p of ports[p / 64] set = port p selected. */
	__u64 ports[SOCKREDIR_PORT_WORDS];
};

/* config.flags: stop redirecting; set by detach before the programs go away. */
#define SOCKREDIR_F_DRAINING (1U << 0)
/*
 * config.flags: accelerate only connections with a selected local or remote
 * port (attach --ports). Both ends of a connection see the same two ports, so
 * both or neither enter the map.
 */
#define SOCKREDIR_F_PORTS (1U << 1)

/*
 * Value of the per-socket "path" storage: once a socket's data has taken the
 * TCP/IP path it never switches to redirection, because the receiver reads
 * its redirect queue before its TCP receive queue and would reorder the bytes.
 */
#define SOCKREDIR_PATH_TCP 1U

/*
 * Detach hands the sockets of the sockhash back to TCP, each once nothing redirected to it is unread, with one of
 * two programs: the eviction iterator (SOCKREDIR_PROG_EVICT, iter/sockmap) where the kernel loads it, else
 * SOCKREDIR_PROG_UNMAP (tc), which user space runs with BPF_PROG_TEST_RUN on batches of keys it lists.
 */
enum sockredir_evict_verdict {
	SOCKREDIR_EVICT_TAKEN_OUT = 0,
	/* Its psock holds redirected data not read yet, or the program could not tell: deleting would free it. */
	SOCKREDIR_EVICT_UNREAD = 1,
	/* bpf_map_delete_elem() refused. */
	SOCKREDIR_EVICT_DELETE_FAILED = 2,
	/* Not in the map any more (its connection closed): unmap only. */
	SOCKREDIR_EVICT_GONE = 3,
};

/*
 * What the iterator writes, with bpf_seq_write, for each socket it leaves in the sockhash; a socket it takes out
 * writes nothing. A read() of the iterator that ends inside a hash bucket starts that bucket again at the next
 * read() (sock_hash_seq_start), so a socket can be reported twice: count by key.
 */
struct sockredir_evict_record {
	__u32 verdict; /* enum sockredir_evict_verdict */
	__u32 reserved;
	struct sockredir_key key;
};

/* The single entry of the "unmap_batch" array: keys in, one verdict per key out. */
#define SOCKREDIR_UNMAP_BATCH 64
struct sockredir_unmap_batch {
	__u32 count; /* keys[0, count) are to be handed back */
	__u32 reserved;
	struct sockredir_key keys[SOCKREDIR_UNMAP_BATCH];
	__u32 verdicts[SOCKREDIR_UNMAP_BATCH]; /* enum sockredir_evict_verdict */
};

/* Names of the maps and programs, as the loader and the pin dir know them. */
#define SOCKREDIR_MAP_SOCKS "sock_hash"
#define SOCKREDIR_MAP_COUNTERS "counters"
#define SOCKREDIR_MAP_CONFIG "config"
#define SOCKREDIR_MAP_PATH "path_state"
/* Used by SOCKREDIR_PROG_UNMAP alone. */
#define SOCKREDIR_MAP_UNMAP_BATCH "unmap_batch"
#define SOCKREDIR_PROG_SOCKOPS "sockredir_sockops"
#define SOCKREDIR_PROG_MSG "sockredir_msg"
/* Optional, both: attach goes on without them where the kernel cannot load them (no kernel BTF, too old). */
#define SOCKREDIR_PROG_EVICT "sockredir_evict"
#define SOCKREDIR_PROG_UNMAP "sockredir_unmap"

#define SOCKREDIR_DEFAULT_MAX_SOCKETS 65536

#endif
