#!/usr/bin/env python3
"""A threaded full-duplex client (tests/real_servers.sh): one thread blocks in recv() on the socket while another
sends an upload on it and then half-closes it with shutdown(SHUT_WR); the server answers once it has the whole upload.
The receiving thread must get every byte back, then EOF, and never an exception.

usage: duplex_client.py PORT BYTES SEED
"""
import random
import socket
import sys
import threading
import time


def main():
    port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    data = random.Random(seed).randbytes(n)
    sock = socket.create_connection(("127.0.0.1", port))
    received = bytearray()
    errors = []

    def reader():
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    # A daemon: a reader stuck in recv() must not keep the process from exiting with its verdict.
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.05)  # the reader is in recv() before the first byte goes out
    for offset in range(0, n, 65536):
        sock.sendall(data[offset:offset + 65536])
    sock.shutdown(socket.SHUT_WR)
    thread.join(timeout=30)
    if thread.is_alive():
        sys.exit(f"duplex_client: the reader is still in recv() after 30 s, {len(received)} bytes")
    sock.close()
    if errors:
        sys.exit(f"duplex_client: the reader raised {errors[0]} after {len(received)} bytes")
    if bytes(received) != data:
        sys.exit(f"duplex_client: got {len(received)} bytes back, not the {n} sent")
    print(f"duplex_client: {n} bytes sent, {len(received)} back intact, then EOF, no exception")


if __name__ == "__main__":
    main()
