#!/usr/bin/env python3
"""Holds N idle connections to a threadcenter server, pings each one once, and reports
the server's RSS per connection: (RSS with N open - RSS with none) / N.

    scripts/idle-connections.py --port 5050 --pid SERVER_PID [-n 10000] [--batch 500]

Connections are opened in batches of non-blocking sockets; each is pinged once and
its answer checked (id and pong) through epoll, bounded by --timeout in all. Needs an
open-file limit above N for this process (each connection is a descriptor here and
one or two in the server). Prints one line of figures; exits 1 if any connection was
refused or not answered.
"""
import argparse
import json
import select
import socket
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no process {pid}")


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    deadline = time.monotonic() + a.timeout
    time.sleep(0.5)
    rss0, threads0 = rss_kib(a.pid), threads(a.pid)
    ep = select.epoll()
    socks = {}
    bufs = {}
    answered = refused = 0
    started = time.monotonic()
    for base in range(0, a.n, a.batch):
        batch = []
        for i in range(base, min(a.n, base + a.batch)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(10)
            s.connect((a.host, a.port))
            s.setblocking(False)
            payload = json.dumps({"id": i, "cmd": "ping"}).encode()
            s.send(struct.pack(">I", len(payload)) + payload)
            socks[s.fileno()] = (s, i)
            bufs[s.fileno()] = b""
            ep.register(s.fileno(), select.EPOLLIN)
            batch.append(s.fileno())
        pending = set(batch)
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out with {len(pending)} unanswered")
            for fd, _ in ep.poll(1.0):
                s, i = socks[fd]
                chunk = s.recv(4096)
                if not chunk:
                    refused += 1
                    pending.discard(fd)
                    ep.unregister(fd)
                    continue
                bufs[fd] += chunk
                b = bufs[fd]
                if len(b) >= 4 and len(b) >= 4 + struct.unpack(">I", b[:4])[0]:
                    r = json.loads(b[4:4 + struct.unpack(">I", b[:4])[0]])
                    if r.get("id") == i and r.get("pong") is True:
                        answered += 1
                    else:
                        refused += 1
                    pending.discard(fd)
                    ep.unregister(fd)
    took = time.monotonic() - started
    time.sleep(1.0)
    rss1, threads1 = rss_kib(a.pid), threads(a.pid)
    per = (rss1 - rss0) * 1024 / a.n
    print(
        f"connections {a.n}: {answered} answered, {refused} refused or closed, opened and pinged in {took:.1f} s; "
        f"server RSS {rss0} KiB with none, {rss1} KiB with all open: {per / 1024:.2f} KiB ({per:.0f} B) per connection; "
        f"server threads {threads0} -> {threads1}"
    )
    for s, _ in socks.values():
        s.close()
    return 0 if answered == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
