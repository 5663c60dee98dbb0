/*
 * tools/bench-data/pipe_floor.c: the round-trip floor of this machine, without any
 * socket: under both plain TCP and redirection.
 *
 *   pipe_floor CPU_A CPU_B SIZE SECONDS   prints "P50_US P99_US ROUND_TRIPS"
 *
 * SIZE bytes go to the other process and back through two pipes, as sockperf's ping-pong
 * does through one TCP connection: each hop is one copy in, one copy out and one wakeup of
 * the other side, and nothing else. CPU "-" leaves that process unpinned. Built and run by
 * tools/bench; exit 1 with a message on any failure.
 */
#define _GNU_SOURCE
#define TOOL_NAME "pipe_floor"
#include <sys/wait.h>
#include <unistd.h>

#include "benchtool.h"

/* Reads exactly n bytes; 0 at end of file before the first byte, 1 when done. */
static int read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0) {
			if (got == 0)
				return 0;
			errno = EPIPE;
			die("read: short message");
		}
		got += (size_t)r;
	}
	return 1;
}

static void write_full(int fd, const char *buf, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t w = write(fd, buf + put, n - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write");
		put += (size_t)w;
	}
}

static int pingpong(const char *cpu_a, const char *cpu_b, size_t size, double seconds)
{
	int to_child[2], to_parent[2];
	struct samples rtt = {0};
	char *buf = malloc(size);
	pid_t pid;
	int status;

	if (!buf)
		die("malloc");
	memset(buf, 'x', size);
	if (pipe(to_child) != 0 || pipe(to_parent) != 0)
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		pin(cpu_b);
		while (read_full(to_child[0], buf, size))
			write_full(to_parent[1], buf, size);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	pin(cpu_a);
	/* A short warm-up, then round trips until the time is up. */
	for (int i = 0; i < 1000; i++) {
		write_full(to_child[1], buf, size);
		if (!read_full(to_parent[0], buf, size))
			die("read: the echo process ended");
	}
	for (double end = now() + seconds, t0 = now(); t0 < end; ) {
		double t1;

		write_full(to_child[1], buf, size);
		if (!read_full(to_parent[0], buf, size))
			die("read: the echo process ended");
		t1 = now();
		samples_add(&rtt, (t1 - t0) * 1e6);
		t0 = t1;
	}
	close(to_child[1]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errno = ECHILD;
		die("the echo process failed");
	}
	samples_print(&rtt);
	return 0;
}

int main(int argc, char **argv)
{
	size_t size;
	double seconds;

	if (argc != 5) {
		fprintf(stderr, "usage: pipe_floor CPU_A CPU_B SIZE SECONDS\n");
		return 1;
	}
	size = strtoul(argv[3], NULL, 10);
	seconds = atof(argv[4]);
	if (size == 0 || seconds <= 0) {
		fprintf(stderr, "pipe_floor: SIZE and SECONDS must be positive\n");
		return 1;
	}
	return pingpong(argv[1], argv[2], size, seconds);
}
