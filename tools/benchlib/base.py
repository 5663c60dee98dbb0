"""What every module of the bench shares: its error, its log line and the runner of short helper commands."""

import os
import subprocess
import sys

# The source tree: tools/benchlib/base.py is three levels below it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = "bench"


class BenchError(Exception):
    """A workload or a set-up step failed; the message says which and why."""


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=30, check=True):
    """A short helper command outside the workload (ip, ss, status); its stdout."""
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(cmd)}: timed out after {timeout} s") from e
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout
