#!/usr/bin/env python3
"""The server side of tests/real_servers.sh's stories: a slow server that answers in pieces, and one that answers an
upload once the client has half-closed. One thread per connection.

usage: story_server.py PIECES-PORT UPLOAD-PORT

PIECES-PORT: the client sends "N SEED\\n"; the server sends random.Random(SEED).randbytes(N) in 8 KiB pieces, 2 ms
apart, and closes.
UPLOAD-PORT: the server reads until the client's FIN, waits 100 ms (so that the client's reader sits in recv() with
nothing to read while its own FIN is acknowledged), sends every byte back, and closes.

The server's own sockets have timeouts, which makes Python poll() them non-blocking: what is tested is the clients'
blocking reads, not the server's.
"""
import random
import socket
import sys
import threading
import time

PIECE = 8192
TIMEOUT = 30


def pieces(conn):
    request = b""
    while not request.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            return
        request += chunk
    n, seed = (int(x) for x in request.split())
    data = random.Random(seed).randbytes(n)
    for offset in range(0, n, PIECE):
        conn.sendall(data[offset:offset + PIECE])
        time.sleep(0.002)


def upload(conn):
    data = bytearray()
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    time.sleep(0.1)
    conn.sendall(data)


def serve(conn, story):
    with conn:
        conn.settimeout(TIMEOUT)
        try:
            story(conn)
        except OSError as e:  # a client that failed its story; the client reports it
            print(f"story_server: {story.__name__}: {e!r}", file=sys.stderr)


def listen(port, story):
    listener = socket.create_server(("127.0.0.1", port), backlog=16)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, story), daemon=True).start()


def main():
    pieces_port, upload_port = int(sys.argv[1]), int(sys.argv[2])
    threading.Thread(target=listen, args=(pieces_port, pieces), daemon=True).start()
    listen(upload_port, upload)


if __name__ == "__main__":
    main()
