#!/usr/bin/env python3
"""A blocking client that takes signals (tests/real_servers.sh): a 1 ms interval timer with a handler installed with
SA_RESTART, as profilers, progress timers and SIGCHLD handlers are, while it reads a slow answer with blocking recv().
On TCP the kernel restarts the interrupted recv(); the client must get every byte and never an exception.

usage: signal_client.py PORT BYTES SEED
"""
import random
import signal
import socket
import sys

signals = 0


def on_alarm(signum, frame):
    global signals
    signals += 1


def main():
    port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    signal.signal(signal.SIGALRM, on_alarm)
    signal.siginterrupt(signal.SIGALRM, False)  # SA_RESTART
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"{n} {seed}\n".encode())
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    got = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        # Stopped on every path: a SIGALRM after the handler is gone would kill the process and hide the exception.
        signal.setitimer(signal.ITIMER_REAL, 0)
    sock.close()
    if bytes(got) != random.Random(seed).randbytes(n):
        sys.exit(f"signal_client: got {len(got)} bytes, not the {n} sent")
    if signals < 10:
        sys.exit(f"signal_client: only {signals} timer signals: the story did not happen")
    print(f"signal_client: {len(got)} bytes intact, {signals} timer signals, no exception")


if __name__ == "__main__":
    main()
