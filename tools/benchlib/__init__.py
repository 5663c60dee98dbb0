"""tools/bench: plain loopback TCP against redirected, interleaved, in isolation.

Every workload runs in a fresh private network namespace (loopback only) inside
one of two private cgroups under the cgroup2 mount: "plain", where nothing is
attached, and "redirected", where sockredir-min is attached for the whole run
(pins on a private bpffs mount). Plain and redirected runs alternate (A B A B
...), round after round; the tables give medians over the rounds. The loader
part times attach and detach of sockredir-min against the equivalent bpftool
command sequence on two more private cgroups, in the same run.

Writes OUT/benchmarks.md and OUT/benchmarks.png (OUT: docs/ by default) and
prints the table. Needs root and the packages of tools/setup.sh. Leaves nothing
behind: every process it started, its cgroups, namespaces and bpffs mount are
removed on every exit path. Python standard library, plus matplotlib for the
chart (Debian's python3-matplotlib: hence /usr/bin/python3, not a python3 from
PATH).

The modules, by concern:
  config     what is measured: the settings, the workloads' parameters, the rows of the report
  base       BenchError, log, and run() for short helper commands
  binary     what the bench asks sockredir-min (check, status --json, status --json --sample)
  sandbox    the cgroups, namespaces and bpffs mount of the run, its processes, and their removal
  workloads  the event-driven stream, ping-pong and stopped reader (bench-data/evloop.c), iperf3, sockperf,
             redis, nginx + wrk, SMC-D loopback where the kernel has it, the floors, and the program-cost pass
  loaders    sockredir-min against the bpftool sequence: attach/detach time, peak RSS, size
  report     the markdown (from benchmarks.md.in) and the chart
  main       the command line and the order of the run
"""
