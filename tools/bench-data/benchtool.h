/*
 * tools/bench-data/benchtool.h: what the bench's two C tools (pipe_floor.c, evloop.c) share: dying with a message,
 * pinning to a CPU, the monotonic clock, and the round-trip samples of a ping-pong with their percentiles. Each tool
 * defines TOOL_NAME, the prefix of its messages, before including it.
 */
#ifndef BENCHTOOL_H
#define BENCHTOOL_H

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what)
{
	fprintf(stderr, TOOL_NAME ": %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Pins the calling process to CPU ("-": leaves it unpinned). */
static void pin(const char *cpu)
{
	cpu_set_t set;

	if (strcmp(cpu, "-") == 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(atoi(cpu), &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die("sched_setaffinity");
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Round-trip times in µs, as many as a run takes. */
struct samples {
	double *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, double us)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1 << 20;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			die("realloc");
	}
	s->v[s->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Prints "P50_US P99_US COUNT". */
static void samples_print(struct samples *s)
{
	if (s->n == 0) {
		fprintf(stderr, TOOL_NAME ": no round trip measured\n");
		exit(1);
	}
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	printf("%.3f %.3f %zu\n", s->v[s->n / 2], s->v[(size_t)(s->n * 0.99)], s->n);
}

#endif
