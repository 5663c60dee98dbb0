/*
 * tools/bench-data/evloop.c: the event-driven workloads of tools/bench, over one loopback TCP connection between
 * two processes, written the way event-driven servers and clients are (non-blocking sockets, epoll, read and write
 * until EAGAIN): the connections sockredir redirects. iperf3 and sockperf read in blocking mode, which keeps their
 * connections on TCP.
 *
 *   evloop stream SIZE SECONDS [smc|copy]            prints "BYTES_PER_S BYTES"
 *   evloop pingpong SIZE SECONDS CPU_A CPU_B [smc]   prints "P50_US P99_US ROUND_TRIPS"
 *   evloop hold SIZE [smc]                           prints "QUEUED_BYTES TCP_MEM_DELTA_BYTES"
 *
 * stream: the client writes SIZE-byte chunks for SECONDS, the server reads into a 256 KiB buffer; the rate is the
 * server's, from its first byte to the end of the stream. pingpong: SIZE bytes to the server and back, round trip
 * after round trip, each side pinned to its CPU ("-": unpinned). hold: the server reads nothing after a first
 * exchange; the client writes SIZE-byte chunks until it is held back (no room for 1 s): what it could queue, and how
 * much the host's TCP memory (/proc/net/sockstat, "mem" in pages) grew meanwhile. Every byte streamed or echoed is
 * checked against the pattern it was sent with. "smc" opens both sockets with IPPROTO_SMC (SMC-D loopback, where
 * the kernel has it); "copy" measures the stream's floor instead (copy_floor()). Exit 1 with a message on any failure.
 */
#define _GNU_SOURCE
#define TOOL_NAME "evloop"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchtool.h"

#ifndef IPPROTO_SMC
#define IPPROTO_SMC 256
#endif

#define PATTERN 251 /* a prime: the pattern never lines up with a power-of-two chunk */
#define READ_BUF (256 * 1024)

static void fail(const char *what)
{
	fprintf(stderr, "evloop: %s\n", what);
	exit(1);
}

/* n + PATTERN bytes of the pattern: byte i of a stream is i % PATTERN, so offset o starts at pattern + o % PATTERN. */
static char *pattern(size_t n)
{
	char *p = malloc(n + PATTERN);

	if (!p)
		die("malloc");
	for (size_t i = 0; i < n + PATTERN; i++)
		p[i] = (char)(i % PATTERN);
	return p;
}

static int protocol;

/* A listener on 127.0.0.1, any port; its port in *port. */
static int listener(unsigned short *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, protocol);

	if (fd < 0)
		die(protocol ? "socket(IPPROTO_SMC)" : "socket");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		die("listen");
	*port = ntohs(a.sin_port);
	return fd;
}

/* Waits for EVENTS on fd (the process's one socket); 0 when TIMEOUT_MS passed first. */
static int wait_for(int fd, unsigned events, int timeout_ms)
{
	static int ep = -1;
	static unsigned armed;
	struct epoll_event ev = {.events = events}, out;
	int n;

	/* One epoll set per process, with the one socket it drives; changed only when it waits for something else
	 * (an event loop keeps its interest set, it does not rebuild it per wait). */
	if (ep < 0) {
		ep = epoll_create1(0);
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll");
		armed = events;
	} else if (events != armed) {
		if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
			die("epoll_ctl");
		armed = events;
	}
	do
		n = epoll_wait(ep, &out, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		die("epoll_wait");
	return n;
}

/* The client's end: a non-blocking socket from the start (so sockredir sees it non-blocking when established). */
static int connect_to(unsigned short port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, protocol);
	int err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (errno != EINPROGRESS)
			die("connect");
		if (wait_for(fd, EPOLLOUT, 10000) == 0)
			fail("connect: no answer in 10 s");
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			errno = err;
			die("connect");
		}
	}
	return fd;
}

static int accept_one(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

	if (fd < 0)
		die("accept");
	close(lfd);
	return fd;
}

/* Writes all n bytes, waiting for room as an event loop does. */
static void send_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

		if (w > 0) {
			buf += w;
			n -= (size_t)w;
		} else if (w < 0 && errno == EAGAIN) {
			wait_for(fd, EPOLLOUT, -1);
		} else if (w < 0 && errno != EINTR) {
			die("send");
		}
	}
}

/* Reads exactly n bytes; 0 at end of stream before the first, 1 when done. */
static int recv_all(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(fd, buf + got, n - got, 0);

		if (r > 0)
			got += (size_t)r;
		else if (r == 0 && got == 0)
			return 0;
		else if (r == 0)
			fail("short message");
		else if (errno == EAGAIN)
			wait_for(fd, EPOLLIN, -1);
		else if (errno != EINTR)
			die("recv");
	}
	return 1;
}

static void reap(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the other process failed");
}

/*
 * The stream's floor: what the two copies of each byte cost alone (the writer's into kernel memory, the reader's out
 * of it, as on TCP and on the redirect path), in one process, with no system call, wake-up or second CPU: SIZE
 * bytes at a time through a 6 MiB region, larger than the caches, as the bytes a stream keeps queued are.
 */
static int copy_floor(size_t size, double seconds)
{
	const size_t region = 6 << 20;
	char *src = pattern(size), *mid = malloc(region + size), *dst = malloc(size);
	unsigned long long total = 0;
	size_t off = 0;
	double start = now(), end = start + seconds, t = start;

	if (!mid || !dst)
		die("malloc");
	memset(mid, 0, region + size);
	while (t < end) {
		for (int i = 0; i < 64; i++) {
			memcpy(mid + off, src, size);
			memcpy(dst, mid + off, size);
			if (dst[size - 1] != src[size - 1])
				fail("copy: a byte differs");
			total += size;
			off = off + size >= region ? 0 : off + size;
		}
		t = now();
	}
	printf("%.0f %llu\n", total / (t - start), total);
	return 0;
}

static int stream(size_t size, double seconds)
{
	unsigned short port;
	int lfd, fd;
	char *buf, *want = pattern(READ_BUF);
	unsigned long long total = 0;
	double first = 0, last;
	pid_t pid;

	lfd = listener(&port);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char *data = pattern(size);
		unsigned long long sent = 0;

		close(lfd);
		fd = connect_to(port);
		for (double end = now() + seconds; now() < end;) {
			/* Write until the socket is full, then wait for room: what an event loop does. */
			ssize_t w = write(fd, data + sent % PATTERN, size);

			if (w > 0)
				sent += (unsigned long long)w;
			else if (w < 0 && errno == EAGAIN)
				wait_for(fd, EPOLLOUT, 1000);
			else if (w < 0 && errno != EINTR)
				die("write");
		}
		if (shutdown(fd, SHUT_WR) != 0)
			die("shutdown");
		/* Until the reader has it all: its close. */
		while (recv_all(fd, data, 1))
			;
		_exit(0);
	}
	fd = accept_one(lfd);
	buf = malloc(READ_BUF);
	if (!buf)
		die("malloc");
	for (;;) {
		ssize_t r = read(fd, buf, READ_BUF);

		if (r > 0) {
			if (total == 0)
				first = now();
			if (memcmp(buf, want + total % PATTERN, (size_t)r) != 0)
				fail("stream: a byte differs from what was sent");
			total += (unsigned long long)r;
		} else if (r == 0) {
			break;
		} else if (errno == EAGAIN) {
			wait_for(fd, EPOLLIN, -1);
		} else if (errno != EINTR) {
			die("read");
		}
	}
	last = now();
	close(fd);
	reap(pid);
	if (total == 0 || last <= first)
		fail("stream: nothing arrived");
	printf("%.0f %llu\n", total / (last - first), total);
	return 0;
}

static int pingpong(size_t size, double seconds, const char *cpu_a, const char *cpu_b)
{
	unsigned short port;
	int lfd = listener(&port), fd;
	char *buf = malloc(size), *want = pattern(size);
	struct samples rtt = {0};
	pid_t pid;

	if (!buf)
		die("malloc");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The echo server. */
		pin(cpu_b);
		fd = accept_one(lfd);
		while (recv_all(fd, buf, size))
			send_all(fd, buf, size);
		_exit(0);
	}
	close(lfd);
	pin(cpu_a);
	fd = connect_to(port);
	for (int i = 0; i < 1000; i++) {
		send_all(fd, want, size);
		if (!recv_all(fd, buf, size))
			fail("pingpong: the echo server ended");
	}
	/* Each round trip timed alone: the check of the echo is outside it. */
	for (double end = now() + seconds;;) {
		double t0 = now(), t1;

		if (t0 >= end)
			break;
		send_all(fd, want, size);
		if (!recv_all(fd, buf, size))
			fail("pingpong: the echo server ended");
		t1 = now();
		samples_add(&rtt, (t1 - t0) * 1e6);
		if (memcmp(buf, want, size) != 0)
			fail("pingpong: the echo differs from what was sent");
	}
	close(fd);
	reap(pid);
	samples_print(&rtt);
	return 0;
}

/* The host's TCP memory in bytes: /proc/net/sockstat's "TCP: ... mem N" (pages; tcp_memory_allocated). */
static long long tcp_mem(void)
{
	FILE *f = fopen("/proc/net/sockstat", "r");
	char line[512];
	long long pages = -1;

	if (!f)
		die("/proc/net/sockstat");
	while (fgets(line, sizeof(line), f)) {
		char *mem = strstr(line, " mem ");

		if (strncmp(line, "TCP:", 4) == 0 && mem)
			pages = atoll(mem + 5);
	}
	fclose(f);
	if (pages < 0)
		fail("no TCP mem in /proc/net/sockstat");
	return pages * sysconf(_SC_PAGESIZE);
}

static int hold(size_t size)
{
	unsigned short port;
	int lfd = listener(&port), fd;
	int ready[2], done[2];
	char byte = 'x';
	pid_t pid;

	if (pipe(ready) != 0 || pipe(done) != 0)
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		/* The reader: one exchange (both readers seen reading, as an application's first request), then it
		 * reads nothing until the writer is done measuring. */
		char one;

		close(ready[0]);
		close(done[1]);
		fd = accept_one(lfd);
		if (!recv_all(fd, &one, 1))
			fail("hold: no first byte");
		send_all(fd, &one, 1);
		if (read(done[0], &one, 1) < 0)
			die("read");
		close(fd);
		_exit(0);
	}
	close(lfd);
	close(ready[1]);
	close(done[0]);
	fd = connect_to(port);
	send_all(fd, &byte, 1);
	if (!recv_all(fd, &byte, 1))
		fail("hold: no answer");
	{
		char *data = pattern(size);
		unsigned long long queued = 0;
		long long before = tcp_mem(), peak = before;

		for (;;) {
			ssize_t w = send(fd, data + queued % PATTERN, size, MSG_NOSIGNAL);

			if (w > 0) {
				queued += (unsigned long long)w;
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno != EAGAIN)
				die("send");
			{
				long long m = tcp_mem();

				peak = m > peak ? m : peak;
			}
			/* Held back: no room for a second. */
			if (wait_for(fd, EPOLLOUT, 1000) == 0)
				break;
		}
		printf("%llu %lld\n", queued, peak - before);
	}
	if (write(done[1], &byte, 1) != 1)
		die("write");
	close(fd);
	reap(pid);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: evloop stream SIZE SECONDS [smc|copy]\n"
			"       evloop pingpong SIZE SECONDS CPU_A CPU_B [smc]\n"
			"       evloop hold SIZE [smc]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	size_t size;
	int args, copy = 0;

	if (argc < 3)
		usage();
	args = strcmp(argv[1], "stream") == 0 ? 4 : strcmp(argv[1], "pingpong") == 0 ? 6 :
	       strcmp(argv[1], "hold") == 0 ? 3 : 0;
	if (args == 0 || (argc != args && argc != args + 1))
		usage();
	if (argc == args + 1) {
		if (strcmp(argv[args], "smc") == 0)
			protocol = IPPROTO_SMC;
		else if (strcmp(argv[args], "copy") == 0 && strcmp(argv[1], "stream") == 0)
			copy = 1;
		else
			usage();
	}
	size = strtoul(argv[2], NULL, 10);
	if (size == 0)
		fail("SIZE must be positive");
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "hold") == 0)
		return hold(size);
	if (atof(argv[3]) <= 0)
		fail("SECONDS must be positive");
	if (strcmp(argv[1], "stream") == 0)
		return copy ? copy_floor(size, atof(argv[3])) : stream(size, atof(argv[3]));
	return pingpong(size, atof(argv[3]), argv[4], argv[5]);
}
