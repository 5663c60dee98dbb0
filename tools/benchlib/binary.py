"""What the bench asks sockredir-min, and the one place that reads its answers: `status --json` for the counters
and the run statistics."""

import json

from .base import BenchError, run


def status(binary, pin_dir):
    """`status --json` of the attachment pinned in PIN_DIR."""
    return json.loads(run([binary, "status", "--pin-dir", pin_dir, "--json"]))


def counters(binary, pin_dir):
    """(messages redirected, messages passed to TCP) so far."""
    c = status(binary, pin_dir)["counters"]
    return c["messages_redirected"], c["messages_passed"]


def run_stats(binary, pin_dir):
    st = status(binary, pin_dir).get("run_stats")
    if st is None:
        raise BenchError("status --json shows no run_stats although BPF_ENABLE_STATS is on")
    return st
