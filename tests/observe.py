#!/usr/bin/python3
"""The operator's view on the real kernel: list, status --prometheus and run --metrics, with live connections.

observe.py BIN list     list shows live connections (endpoints, namespace, processes, paths, counts), filters
                        them by port, forgets them on close; status --prometheus, parsed by prometheus_client,
                        says the same.
observe.py BIN metrics  run --metrics serves the same at /metrics to curl while it runs, answers other methods,
                        paths and oversized requests with their errors, outlasts idle and hostile clients, and
                        stops with the run.

Everything runs in a cgroup, a pin dir and a network namespace of its own, on loopback; the processes it starts are
ended by pid, and everything it made is removed on every path. /usr/bin/python3 on purpose: Debian's
python3-prometheus-client is the parser. Exits 0 (pass), 1 (fail) or 77 (cannot run here).
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

SKIP = 77
PEER_S, PEER_R, PEER_N = 1000, 100, 20  # request and response sizes, exchanges per connection


def fail(message):
    raise AssertionError(message)


def check(cond, message):
    if not cond:
        fail(message)
    print(f"ok - {message}")


def cgroup2_root():
    for line in open("/proc/self/mountinfo", encoding="utf-8"):
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            return fields[4]
    return None


# --- the peers: run as `observe.py peer ROLE ...` inside the cgroup and the namespace -------------------------------

def wait_readable(sock, timeout=10.0):
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        fail("peer: timed out waiting to read")


def recv_exact(sock, n):
    """Event-driven reads (select, then MSG_DONTWAIT), as sockredir redirects to."""
    got = b""
    while len(got) < n:
        wait_readable(sock)
        try:
            chunk = sock.recv(n - len(got), socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        if not chunk:
            return got
        got += chunk
    return got


def peer_server():
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    print(lst.getsockname()[1], flush=True)
    conns = {}
    while True:
        r, _, _ = select.select([lst, *conns], [], [], 60)
        if not r:
            return 1
        for s in r:
            if s is lst:
                c, _ = lst.accept()
                c.setblocking(False)
                conns[c] = 0  # bytes of the current request
                continue
            try:
                data = s.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if not data:
                del conns[s]
                s.close()
                continue
            if data == b"w" and conns[s] == 0:
                s.sendall(b"w")  # the warm-up: one byte each way
                continue
            conns[s] += len(data)
            while conns[s] >= PEER_S:
                conns[s] -= PEER_S
                s.sendall(b"r" * PEER_R)


def peer_client(port, count):
    conns = []
    for _ in range(count):
        # Connected non-blocking, as an event loop connects: sockredir keeps a client that is blocking when its
        # connection is established off the map (its reads would meet the kernel's EAGAIN).
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        select.select([], [c], [], 10)
        if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            fail("peer: connect failed")
        # One byte each way first: both readers are then proven, and what follows is redirected from its first byte.
        c.sendall(b"w")
        if recv_exact(c, 1) != b"w":
            fail("peer: no warm-up answer")
        for _ in range(PEER_N):
            c.sendall(b"q" * PEER_S)
            if recv_exact(c, PEER_R) != b"r" * PEER_R:
                fail("peer: short answer")
        conns.append(c)
    print("ready " + " ".join(str(c.getsockname()[1]) for c in conns), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "lowat":
            # A reader that asks for a low-water mark: sockredir takes its connection off redirection.
            conns[int(words[1])].setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 2)
        elif words[0] == "close":
            conns[int(words[1])].close()
        elif words[0] == "exit":
            return 0
        print("done", flush=True)
    return 0


def peer_hostile(host, port, what):
    """Clients a metrics endpoint must outlast; prints what the server did."""
    addr = (host, int(port))
    if what == "oversized":
        s = socket.create_connection(addr, timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 20000)
        print(s.recv(200).decode(errors="replace").splitlines()[0], flush=True)
    elif what == "crowd":
        # More idle connections than the endpoint serves at once: the one too many is answered 503 at once, the
        # others are closed by the endpoint's deadline.
        idle = [socket.create_connection(addr, timeout=10) for _ in range(16)]
        time.sleep(0.3)
        extra = socket.create_connection(addr, timeout=10)
        print("extra " + extra.recv(200).decode(errors="replace").splitlines()[0], flush=True)
        start = time.monotonic()
        closed = 0
        for s in idle:
            s.settimeout(15)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 0
        print(f"closed {closed} after {time.monotonic() - start:.1f} s", flush=True)
    elif what == "post_body":
        # A body the endpoint never reads: its 405 must still arrive whole, not be lost to a reset.
        s = socket.create_connection(addr, timeout=10)
        s.sendall(b"POST /metrics HTTP/1.1\r\nContent-Length: 200000\r\n\r\n")
        try:
            s.sendall(b"x" * 200000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except ConnectionResetError:
            got += b" (reset)"
        print(got.decode(errors="replace").splitlines()[0] + (" (reset)" if got.endswith(b" (reset)") else ""),
              flush=True)
    elif what == "garbage":
        s = socket.create_connection(addr, timeout=10)
        s.sendall(b"\x00\x01\x02 nonsense\r\n\r\n")
        print(s.recv(200).decode(errors="replace").splitlines()[0], flush=True)
    return 0


# --- the sandbox --------------------------------------------------------------------------------------------------

class Sandbox:
    def __init__(self, binary):
        self.bin = binary
        root = cgroup2_root()
        if root is None:
            raise RuntimeError("no cgroup2 mount")
        tag = f"sockredir-observe-{os.getpid()}"
        self.cg = os.path.join(root, tag)
        self.pin = f"/sys/fs/bpf/{tag}"
        self.ns = tag
        self.procs = []
        os.mkdir(self.cg)
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)

    def spawn(self, argv, in_cgroup=True, stdin=subprocess.DEVNULL):
        """argv in the namespace (and the cgroup), stdout a pipe of lines."""
        procs_file = os.path.join(self.cg, "cgroup.procs")

        def enter():
            if in_cgroup:
                with open(procs_file, "w", encoding="ascii") as f:
                    f.write(str(os.getpid()))

        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", "--", *argv], stdin=stdin, stdout=subprocess.PIPE,
                             preexec_fn=enter)
        self.procs.append(p)
        return p

    def peer(self, *args, stdin=subprocess.DEVNULL):
        return self.spawn(["/usr/bin/python3", os.path.realpath(__file__), "peer", *args], stdin=stdin)

    def sr(self, *args):
        return subprocess.run([self.bin, *args], capture_output=True, text=True, timeout=60)

    def in_ns(self, *argv, timeout=30):
        # nsenter, not ip netns exec: that one mounts a sysfs of its own, without the cgroup2 mount and bpffs.
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", "--", *argv], capture_output=True, text=True,
                              timeout=timeout)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # by pid: only what this test started
            p.wait()
        if os.path.exists(self.pin):
            subprocess.run([self.bin, "detach", "--pin-dir", self.pin], capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)
        for _ in range(50):
            try:
                os.rmdir(self.cg)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def readline(p, timeout=20):
    """The next line of p's stdout, read unbuffered (select on a buffered pipe misses lines already buffered)."""
    buf = p.__dict__.setdefault("line_buffer", bytearray())
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        r, _, _ = select.select([p.stdout], [], [], max(left, 0))
        if not r:
            fail(f"no line from {p.args[-3:]} in {timeout} s")
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            fail(f"{p.args[-3:]} closed its output")
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode(errors="replace").strip()


def list_json(sb, *args):
    r = sb.sr("list", "--json", "--pin-dir", sb.pin, *args)
    if r.returncode != 0:
        fail(f"list exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def wait_for(what, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def parse_prometheus(text):
    """Every sample by (name, sorted labels), through the real parser."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415 (after the skip check)
    samples = {}
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def start_traffic(sb, connections):
    server = sb.peer("server")
    port = int(readline(server))
    client = sb.peer("client", str(port), str(connections), stdin=subprocess.PIPE)
    words = readline(client).split()
    if words[0] != "ready":
        fail(f"client said {words}")
    return server, port, client, [int(w) for w in words[1:]]


def one_connection_redirected(sb):
    """A workload in the sandbox's namespace and cgroup, redirected both ways: list says so, byte-exact."""
    server, _, client, _ = start_traffic(sb, 1)
    listing = wait_for("one", lambda: (lambda j: j if len(j["connections"]) == 1 else None)(list_json(sb)))
    client.stdin.write(b"exit\n")
    client.stdin.close()
    client.wait(timeout=10)
    server.kill()
    server.wait()
    c = listing["connections"][0] if listing else {}
    return c.get("up", {}).get("path") == "redirected" and c.get("down", {}).get("path") == "redirected" and \
        c["up"]["bytes"] == PEER_N * PEER_S


def tell(client, line):
    client.stdin.write((line + "\n").encode())
    client.stdin.flush()
    if readline(client) != "done":
        fail(f"client did not do '{line}'")


# --- list and status --prometheus ---------------------------------------------------------------------------------

def test_list(sb):
    r = sb.sr("list", "--pin-dir", sb.pin)
    check(r.returncode == 1 and r.stderr == f"sockredir-min: not attached (no pins in {sb.pin})\n",
          "list before attach exits 1 with one line")
    r = sb.sr("status", "--prometheus", "--pin-dir", sb.pin)
    families, samples = parse_prometheus(r.stdout)
    check(r.returncode == 0 and samples.get(("sockredir_attached", (("pin_dir", sb.pin),))) == 0,
          "status --prometheus before attach parses and says sockredir_attached 0")
    for bad in (["--port", "0"], ["--port", "65536"], ["--port", "x"]):
        r = sb.sr("list", "--pin-dir", sb.pin, *bad)
        check(r.returncode == 2 and r.stderr.count("\n") == 1, f"list {' '.join(bad)} is a usage error (exit 2)")
    r = sb.sr("status", "--prometheus", "--json", "--pin-dir", sb.pin)
    check(r.returncode == 2, "status --prometheus --json is a usage error")

    r = sb.sr("attach", "--cgroup", sb.cg, "--pin-dir", sb.pin)
    if r.returncode != 0:
        fail(f"attach: {r.stderr.strip()}")
    check(list_json(sb)["connections"] == [], "attached, nothing connected: no connection listed")

    server, port, client, cports = start_traffic(sb, 3)
    tell(client, "lowat 0")
    ns_inode = os.stat(f"/run/netns/{sb.ns}").st_ino
    # The counters of the last exchange reach the map with its send: the list is exact once the peers are idle.
    listing = wait_for("three connections", lambda: (lambda j: j if len(j["connections"]) == 3 else None)(
        list_json(sb)))
    check(listing is not None, "three live connections, three rows")
    conns = listing["connections"]
    check([c["client"]["port"] for c in conns] == sorted(cports), "sorted by server, then client port")
    for c in conns:
        idx = cports.index(c["client"]["port"])
        where = f"connection {idx}"
        check(c["netns"]["inode"] == ns_inode and c["netns"]["name"] == sb.ns and c["netns"]["cookie"] > 0,
              f"{where}: its namespace by inode, name and cookie")
        check(c["family"] == "ipv4" and c["client"]["address"] == "127.0.0.1" and c["server"]["port"] == port,
              f"{where}: its endpoints")
        check(c["client"]["processes"] == [{"pid": client.pid, "command": "python3"}] and
              c["server"]["processes"] == [{"pid": server.pid, "command": "python3"}],
              f"{where}: the owning processes, pid and command")
        check(c["client"]["socket_cookie"] > 0 and c["server"]["socket_cookie"] > 0 and
              (idx == 0 or (c["client"]["in_map"] and c["server"]["in_map"])),
              f"{where}: its sockets' cookies; in the map, where redirected")
        check(c["up"]["bytes"] == PEER_N * PEER_S and c["up"]["messages"] == PEER_N and
              c["down"]["bytes"] == PEER_N * PEER_R and c["down"]["messages"] == PEER_N,
              f"{where}: every redirected byte and message counted each way "
              f"(up {c['up']['bytes']}/{c['up']['messages']}, down {c['down']['bytes']}/{c['down']['messages']})")
        check(c["up"]["unread_bytes"] == 0 and c["down"]["unread_bytes"] == 0, f"{where}: nothing unread")
        if idx == 0:
            check(c["up"]["path"] == "tcp" and c["up"]["reason"] == "reader_lowat" and
                  c["down"]["path"] == "tcp" and c["down"]["reason"] == "reader_lowat",
                  f"{where}: SO_RCVLOWAT moved both directions to TCP, and says why ({c['up']}, {c['down']})")
        else:
            check(c["up"]["path"] == "redirected" and c["up"]["reason"] is None and
                  c["down"]["path"] == "redirected", f"{where}: redirected both ways")

    one = list_json(sb, "--port", str(cports[1]))["connections"]
    check([c["client"]["port"] for c in one] == [cports[1]], "--port CLIENT_PORT: that connection only")
    check(len(list_json(sb, "--port", str(port))["connections"]) == 3, "--port SERVER_PORT: all three")
    unused = next(p for p in range(20000, 30000) if p not in cports and p != port)
    check(list_json(sb, "--port", str(unused))["connections"] == [], "--port of nobody: none")

    r = sb.sr("list", "--pin-dir", sb.pin)
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and lines[0].split()[:4] == ["NETNS", "CLIENT", "SERVER", "UP"] and len(lines) == 4,
          "the text form: a header and a row per connection")
    row = next(line for line in lines if f"127.0.0.1:{cports[1]} " in line)
    check(row.split()[0] == sb.ns and row.split()[3] == "redirected" and f"python3[{client.pid}]" in row and
          f"python3[{server.pid}]" in row, "a text row: namespace, path and processes")
    check("tcp:reader_lowat" in next(line for line in lines if f"127.0.0.1:{cports[0]} " in line),
          "a text row of a connection on TCP says why")

    # status --prometheus, through prometheus_client's parser: the same connections, the same counters.
    status = json.loads(sb.sr("status", "--json", "--pin-dir", sb.pin).stdout)
    r = sb.sr("status", "--prometheus", "--pin-dir", sb.pin)
    families, samples = parse_prometheus(r.stdout)
    check(r.returncode == 0, "status --prometheus exits 0")
    version = sb.sr("--version").stdout.split()[-1]
    check(samples.get(("sockredir_build_info", (("version", version),))) == 1, "the build-info gauge")
    check(samples.get(("sockredir_attached", (("pin_dir", sb.pin),))) == 1, "sockredir_attached 1")
    check(samples.get(("sockredir_sockets", ())) == status["sockets"] and status["sockets"] in (4, 6),
          "sockets in the map, as status says (the connection on TCP leaves on its next segment)")
    check(samples.get(("sockredir_connections", (("path", "redirected"), ("reason", "")))) == 2 and
          samples.get(("sockredir_connections", (("path", "tcp"), ("reason", "reader_lowat")))) == 1,
          "connections by path and reason: 2 redirected, 1 on TCP for reader_lowat")
    check(samples.get(("sockredir_directions", (("path", "redirected"), ("reason", "")))) == 4,
          "directions by path: 4 redirected")
    for name, value in status["counters"].items():
        got = samples.get((f"sockredir_{name}_total", ()))
        if got != value:
            fail(f"counter {name}: prometheus {got}, status --json {value}")
    check(all(families.get(f"sockredir_{n}") == "counter" for n in status["counters"]),
          f"all {len(status['counters'])} counters, typed counter, equal to status --json's")
    check(samples.get(("sockredir_reader_lowat_total", ())) == 1, "reader_lowat counted once")

    tell(client, "close 1")
    check(wait_for("closed", lambda: [c["client"]["port"] for c in list_json(sb)["connections"]] ==
                   [p for p in sorted(cports) if p != cports[1]]), "a closed connection leaves the list")
    client.stdin.write(b"exit\n")
    client.stdin.close()
    client.wait(timeout=10)
    check(wait_for("all closed", lambda: list_json(sb)["connections"] == []), "its process gone: none left")


# --- run --metrics -----------------------------------------------------------------------------------------------

def http_code(sb, url, *curl):
    r = sb.in_ns("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *curl, url)
    return r.stdout


def test_metrics(sb):
    r = sb.sr("run", "--cgroup", sb.cg, "--pin-dir", sb.pin, "--metrics", "localhost:9477")
    check(r.returncode == 2 and "--metrics needs HOST:PORT" in r.stderr, "--metrics localhost:9477: usage error")
    # A port that is taken fails the run before anything is attached.
    taken = sb.spawn(["/usr/bin/python3", "-c", "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0));"
                      "s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)"], in_cgroup=False)
    taken_port = readline(taken)
    r = sb.in_ns(sb.bin, "run", "--cgroup", sb.cg, "--pin-dir", sb.pin, "--metrics", f"127.0.0.1:{taken_port}")
    check(r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot listen on" in r.stderr and
          not os.path.exists(sb.pin), f"a taken port: exit 1, one line, nothing attached ({r.stderr.strip()})")
    taken.kill()

    run = sb.spawn([sb.bin, "run", "--cgroup", sb.cg, "--pin-dir", sb.pin, "--metrics", "127.0.0.1:0"],
                   in_cgroup=False)
    address = None
    for _ in range(10):
        line = readline(run, 30)
        m = re.match(r"serving metrics at http://(.*)/metrics$", line)
        if m:
            address = m.group(1)
        if line.startswith("running until"):
            break
    check(address is not None, f"run says where it serves the metrics ({address})")
    url = f"http://{address}/metrics"
    host, port = address.rsplit(":", 1)

    r = sb.in_ns("curl", "-sS", "-f", "--max-time", "10", "-D", "-", url)
    head, _, body = r.stdout.partition("\n\n")  # text mode: universal newlines
    check(r.returncode == 0 and "Content-Type: text/plain; version=0.0.4" in head, "curl GET /metrics: 200, text 0.0.4")
    families, samples = parse_prometheus(body)
    check(samples.get(("sockredir_attached", (("pin_dir", sb.pin),))) == 1, "scraped while running: attached")

    server, sport, client, cports = start_traffic(sb, 2)
    r = sb.in_ns("curl", "-sS", "-f", "--max-time", "10", url)
    families, samples = parse_prometheus(r.stdout)
    check(samples.get(("sockredir_connections", (("path", "redirected"), ("reason", "")))) == 2 and
          samples.get(("sockredir_messages_redirected_total", ())) >= 2 * 2,
          "a scrape under traffic: 2 connections redirected, their messages counted (in batches: each direction's "
          "first at once)")

    check(http_code(sb, url, "-X", "POST") == "405", "POST: 405")
    check(http_code(sb, url, "-I") == "405", "HEAD: 405")
    check(http_code(sb, f"http://{address}/") == "404", "another path: 404")
    check(http_code(sb, url + "?x=1") == "200", "a query string: 200")
    hostile = sb.in_ns("/usr/bin/python3", os.path.realpath(__file__), "peer", "hostile", host, port, "oversized")
    check(hostile.stdout.strip() == "HTTP/1.1 431 Request Header Fields Too Large", "a 20 KB header: 431")
    hostile = sb.in_ns("/usr/bin/python3", os.path.realpath(__file__), "peer", "hostile", host, port, "post_body")
    check(hostile.stdout.strip() == "HTTP/1.1 405 Method Not Allowed",
          f"a POST with a 200 KB body it never reads: its 405 arrives whole ({hostile.stdout.strip()})")
    hostile = sb.in_ns("/usr/bin/python3", os.path.realpath(__file__), "peer", "hostile", host, port, "garbage")
    check(hostile.stdout.strip() == "HTTP/1.1 400 Bad Request", "garbage: 400")
    hostile = sb.in_ns("/usr/bin/python3", os.path.realpath(__file__), "peer", "hostile", host, port, "crowd",
                       timeout=60)
    lines = hostile.stdout.splitlines()
    check(lines and lines[0] == "extra HTTP/1.1 503 Service Unavailable", "one client too many: 503 at once")
    m = re.match(r"closed (\d+) after ([0-9.]+) s", lines[1] if len(lines) > 1 else "")
    check(m and int(m.group(1)) == 16 and 3.0 < float(m.group(2)) < 10.0,
          f"16 idle clients closed by the deadline ({lines[1:]})")
    check(http_code(sb, url) == "200" and run.poll() is None, "after them all: still serving, still running")

    client.stdin.write(b"exit\n")
    client.stdin.close()
    run.send_signal(signal.SIGTERM)
    rest = bytes(run.__dict__.get("line_buffer", b"")).decode() + run.communicate(timeout=60)[0].decode()
    check(run.returncode == 0 and "detached" in rest, "SIGTERM: run detaches and exits 0")
    check(not os.path.exists(sb.pin), "nothing left in the pin dir")
    check(http_code(sb, url) == "000", "the endpoint is gone with the run")


def main(argv):
    if len(argv) >= 2 and argv[1] == "peer":
        role = argv[2]
        if role == "server":
            return peer_server()
        if role == "client":
            return peer_client(int(argv[3]), int(argv[4]))
        return peer_hostile(*argv[3:6])
    if len(argv) != 3 or argv[2] not in ("list", "metrics"):
        print(__doc__, file=sys.stderr)
        return 2
    binary, which = argv[1], argv[2]
    if os.geteuid() != 0:
        print("SKIP: needs root (bpf, cgroups, network namespaces)")
        return SKIP
    try:
        import prometheus_client.parser  # noqa: F401,PLC0415
    except ImportError:
        print("SKIP: no prometheus_client for /usr/bin/python3 (apt-get install python3-prometheus-client)")
        return SKIP
    if which == "metrics" and subprocess.run(["which", "curl"], capture_output=True).returncode != 0:
        print("SKIP: no curl")
        return SKIP
    sb = Sandbox(binary)
    try:
        (test_list if which == "list" else test_metrics)(sb)
    except AssertionError as e:
        print(f"not ok - {e}")
        return 1
    finally:
        sb.close()
    print(f"{which}: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
