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
	/* Connections kept off the map when established (SOCKREDIR_SKIP_*). */
	SOCKREDIR_SKIPPED_BLOCKING = 5, /* a client socket in blocking mode: its reads would meet tcp_bpf's EAGAIN */
	SOCKREDIR_SKIPPED_LEARNED = 6,  /* a port whose readers were seen reading in a way the redirect path breaks */
	/* Why messages took TCP (each counts messages). */
	SOCKREDIR_PASS_UNPROVEN = 7,    /* the reader has not yet been seen reading compatibly */
	SOCKREDIR_PASS_CATCHING_UP = 8, /* bytes sent by TCP are still unread: redirecting now would reorder */
	SOCKREDIR_PASS_HELD = 9,        /* flow control: the reader lags by more than --max-inflight */
	SOCKREDIR_PASS_NO_PEER = 10,    /* the peer is not in the map (another cgroup, gone, evicted) */
	SOCKREDIR_PASS_INCOMPATIBLE = 11, /* the connection was taken off the redirect path */
	SOCKREDIR_PASS_DRAINING = 12,
	/* What the receive-path observer saw (each counts connections, once). */
	SOCKREDIR_READER_BLOCKING = 13,  /* a blocking read */
	SOCKREDIR_READER_PEEK_OFF = 14,  /* SO_PEEK_OFF set */
	SOCKREDIR_READER_LOWAT = 15,     /* SO_RCVLOWAT above 1 */
	SOCKREDIR_READER_FLAGS = 16,     /* MSG_OOB or MSG_TRUNC */
	SOCKREDIR_EAGAIN_SEEN = 17,      /* reads: a blocking read of a socket in the map returned EAGAIN (the kernel defect) */
	SOCKREDIR_SOCKETS_EVICTED = 18,  /* sockets taken out of the map (back to plain TCP) */
	SOCKREDIR_PROMOTED = 19,         /* times a direction moved from TCP to redirection */
	/* The option hooks (cgroup/setsockopt): options that change how a socket reads, which the redirect path does
	 * not serve. Set before the connection is established (or inherited from the listener): kept off the map. */
	SOCKREDIR_SKIPPED_OPTIONS = 20,  /* connections: SO_RCVLOWAT above 1 or SO_PEEK_OFF when established */
	SOCKREDIR_READER_INQ = 21,       /* connections: TCP_INQ set (its control message is tcp_recvmsg's alone) */
	/* The adaptive path: a stream of small writes is carried faster by TCP, which coalesces them into segments and
	 * wakes the reader once per segment, where a redirect costs a message and a wake-up per write. */
	SOCKREDIR_PASS_DEMOTED = 22,     /* messages: their connection was moved to TCP for good, as a stream */
	SOCKREDIR_DEMOTED = 23,          /* connections moved to TCP for good as streams of small writes */
	SOCKREDIR_COUNTER_MAX = 24,
};

/* config.ports: one bit per TCP port, 64 ports per word. */
#define SOCKREDIR_PORT_WORDS 1024

/*
 * Value of the single-entry "config" array. sock_ops reads it once per new
 * connection (the port selection), sk_msg once per message (draining).
 */
struct sockredir_config {
	__u32 flags;
	/* What attach's live self-tests found on this kernel (SOCKREDIR_DEFECT_*), for status; the programs do not
	 * read it. Also keeps ports 8-byte aligned. */
	__u32 defects;
	/*
	 * Flow control (attach --max-inflight): a direction stays redirected while what its reader has not read yet
	 * costs at most this many bytes, each queued message counted with SOCKREDIR_MSG_COST more (the kernel's
	 * struct sk_msg that nobody is charged for). Zero: the default (the loader always sets it).
	 */
	__u64 max_inflight;
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
/* config.flags: no demotion (attach --no-adaptive): every direction stays redirected while its reader keeps up. */
#define SOCKREDIR_F_NO_ADAPTIVE (1U << 2)

/*
 * config.defects: the differences from TCP that the kernel's sockmap path leaves open, as attach proved them live
 * (loader/app/selftest.hpp). Bit b: the defect is present; bit b << SOCKREDIR_DEFECT_PROBED_SHIFT: it was probed
 * (no probed bit: not run, or an attach by an older sockredir-min).
 */
#define SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN (1U << 0)
#define SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN (1U << 1)
#define SOCKREDIR_DEFECT_FIONREAD (1U << 2)
#define SOCKREDIR_DEFECT_TCP_INFO_BYTES (1U << 3)
#define SOCKREDIR_DEFECT_MSG_TRUNC (1U << 4)
#define SOCKREDIR_DEFECT_SHUTDOWN_RD (1U << 5)
#define SOCKREDIR_DEFECT_OOB_INLINE (1U << 6)
#define SOCKREDIR_DEFECT_SPLICE (1U << 7)
#define SOCKREDIR_DEFECT_PROBED_SHIFT 16

/*
 * Where the getsockopt hook adds the redirected bytes and messages in the struct tcp_info the kernel returns
 * (<linux/tcp.h>, UAPI: fields are only ever appended). The loader static_asserts them against the header.
 */
#define SOCKREDIR_TCPI_BYTES_ACKED 120
#define SOCKREDIR_TCPI_BYTES_RECEIVED 128
#define SOCKREDIR_TCPI_SEGS_OUT 136
#define SOCKREDIR_TCPI_SEGS_IN 140
#define SOCKREDIR_TCPI_DATA_SEGS_IN 152
#define SOCKREDIR_TCPI_DATA_SEGS_OUT 156
#define SOCKREDIR_TCPI_BYTES_SENT 200

/* What one queued redirected message costs beside its bytes (kernel-notes.md section 2: kmalloc-1k). */
#define SOCKREDIR_MSG_COST 1024

/* sockredir_sock.path: the socket's sending direction right now. TCP first: a direction is redirected only once
 * its reader has been seen reading compatibly and has read every byte sent by TCP (redirect -> TCP keeps the byte
 * order, TCP -> redirect only when nothing sent by TCP is unread). */
#define SOCKREDIR_PATH_TCP 0U
#define SOCKREDIR_PATH_REDIRECT 1U

/* sockredir_sock.flags */
#define SOCKREDIR_SOCK_PASSIVE (1U << 0) /* accepted (the server's end) */
#define SOCKREDIR_SOCK_EVICT (1U << 1)   /* leave the map as soon as nothing redirected to it is unread */
#define SOCKREDIR_SOCK_EVICTED (1U << 2)

/* Value of the per-socket storage "sock_state", made by sock_ops before the socket enters the map. */
struct sockredir_sock {
	struct sockredir_key key;  /* this socket's key: the flow into it is flows[key] */
	struct sockredir_key peer; /* its peer's key: the flow out of it is flows[peer] */
	__u32 path;                /* SOCKREDIR_PATH_* */
	__u32 flags;               /* SOCKREDIR_SOCK_* */
	__u32 copied_seq;          /* the socket's TCP copied_seq after its last observed read */
	/* Messages and bytes this socket redirected that the host-wide counters do not have yet: added to them in
	 * batches of SOCKREDIR_COUNT_BATCH messages, and when the socket sends a segment or closes (a counter
	 * update is a map lookup and an atomic add, a quarter of sk_msg's cost per message). */
	__u32 pending_msgs;
	/* Flow control: bytes this socket may still redirect before it looks at what its reader has read again
	 * (the reader's cache line). Never more than --max-inflight minus what was unread when last looked. */
	__u64 credit;
	__u64 pending_bytes;
	/* The adaptive path: messages (and their bytes) this socket redirected since it last read anything. A socket
	 * that writes SOCKREDIR_DEMOTE_RUN messages in a row, without reading an answer, of less than
	 * SOCKREDIR_DEMOTE_MAX_AVG bytes on average, is a stream that TCP carries faster. */
	__u32 unanswered;
	__u32 reserved;
	__u64 run_bytes;
};

/*
 * Demotion: a connection moves to TCP for good, both sockets leaving the map, when redirection loses on it.
 * - A writer that redirected SOCKREDIR_DEMOTE_RUN messages in a row without reading anything, SOCKREDIR_DEMOTE_MAX_AVG
 *   bytes or less each on average (sk_msg). Request/response reads an answer between its writes; large writes
 *   (128 KiB bulk) gain from redirection and stay.
 * - A reader that SOCKREDIR_DEMOTE_READS times in a row finds SOCKREDIR_DEMOTE_BATCH or more messages' worth queued
 *   (the observer), once SOCKREDIR_DEMOTE_MIN_MSGS were redirected to it: it lags behind a stream of writes.
 */
#define SOCKREDIR_DEMOTE_RUN 64
#define SOCKREDIR_DEMOTE_MAX_AVG (64 * 1024)
#define SOCKREDIR_DEMOTE_MIN_MSGS 16
#define SOCKREDIR_DEMOTE_BATCH 4
#define SOCKREDIR_DEMOTE_READS 8

/* The most redirected messages of one socket that status may not count yet (sockredir_sock.pending_msgs). */
#define SOCKREDIR_COUNT_BATCH 64

/*
 * One direction of a connection, in "flows" under the key of the socket that receives it. The sender writes the
 * first 64 bytes (under its socket lock: plain adds), the receive-path observer the second 64 (atomically: two
 * readers of one socket race): two cache lines, so the two CPUs do not bounce one line per message.
 */
struct sockredir_flow {
	/* The sender's (sk_msg). */
	__u64 redirected_bytes;
	__u64 redirected_msgs;
	__u64 never_ns;         /* when never was set (bpf_ktime_get_ns) */
	__u32 never;            /* the receiver was seen reading in a way the redirect path breaks: TCP for good */
	__u32 reason;           /* the SOCKREDIR_READER_* that closed it */
	__u16 port;             /* the learned-behaviour key of the receiver: its server port, */
	__u16 side;             /* and whether it is the server's end (1) or the client's (0) */
	__u32 reserved0;
	__u64 reserved1[3];
	/* The observer's: what the receiver read. */
	__u64 read_bytes;       /* of the redirected bytes, read by the receiver */
	__u64 read_msgs;        /* a lower bound of the messages read; all of them once every byte is read */
	__u32 rx_copied_seq;    /* the receiver's TCP copied_seq after its last observed read */
	__u32 reader_ok;        /* the receiver was seen reading in a way the redirect path serves as TCP does */
	__u32 batched_reads;    /* redirected reads in a row that each took SOCKREDIR_DEMOTE_BATCH messages or more */
	__u32 reserved3;
	__u64 reserved2[4];
};

/* Key of "learned": how the readers behind one server port of one network namespace read. */
struct sockredir_learn_key {
	__u64 netns_cookie;
	__u16 port;
	__u16 side;
	__u32 reserved;
};
#define SOCKREDIR_LEARNED_BAD 1U

/* Eviction waits this long after a direction was closed to redirection: a sendmsg that saw it open has then
 * surely enqueued its message (the verdict and the enqueue into the peer are not atomic). */
#define SOCKREDIR_EVICT_DELAY_NS 50000000ULL

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
#define SOCKREDIR_MAP_SOCK_STATE "sock_state"
#define SOCKREDIR_MAP_FLOWS "flows"
#define SOCKREDIR_MAP_LEARNED "learned"
/* Used by SOCKREDIR_PROG_UNMAP alone. */
#define SOCKREDIR_MAP_UNMAP_BATCH "unmap_batch"
#define SOCKREDIR_PROG_SOCKOPS "sockredir_sockops"
#define SOCKREDIR_PROG_MSG "sockredir_msg"
/* The receive-path observer, in three variants: the first that loads on this kernel is attached. fexit on
 * tcp_bpf_recvmsg runs for sockets in a sockmap alone; the tracepoint and fexit on sock_recvmsg for every read of
 * the host. */
#define SOCKREDIR_PROG_OBSERVE_MAP "sockredir_observe_map"
#define SOCKREDIR_PROG_OBSERVE_TP "sockredir_observe_tp"
#define SOCKREDIR_PROG_OBSERVE_FEXIT "sockredir_observe_fexit"
/* The option hooks, each optional: on setsockopt, a socket that sets an option the redirect path does not serve
 * leaves redirection before the option can matter; on getsockopt(TCP_INFO), redirected bytes and messages are added
 * to TCP's byte and segment counters. */
#define SOCKREDIR_PROG_SETSOCKOPT "sockredir_setsockopt"
#define SOCKREDIR_PROG_GETSOCKOPT "sockredir_getsockopt"
/* Loaded by detach alone, each optional: detach goes on without them where the kernel cannot load them. */
#define SOCKREDIR_PROG_EVICT "sockredir_evict"
#define SOCKREDIR_PROG_UNMAP "sockredir_unmap"

#define SOCKREDIR_DEFAULT_MAX_SOCKETS 65536
#define SOCKREDIR_LEARNED_ENTRIES 4096

#endif
