#!/usr/bin/env python3
"""SSE helper for scripts/bench-proxy (standard library only).

  serve PORT                      an upstream that streams `data: <send time ns>` events:
                                  GET/POST /sse?events=N&interval_ms=M
  delay URL N INTERVAL_MS         reads one stream of N events through URL and prints the
                                  median and p99 delay (ms) between an event's send and receipt
  hold URL COUNT PIDFILE...       opens COUNT streams through URL, waits until each got its
                                  first event, prints the RSS (KiB) of the given processes, and
                                  closes them
  crowd URL IDLE STREAMS PID...   opens IDLE keep-alive connections (one short request each,
                                  then idle) and STREAMS open streams through URL, prints the
                                  RSS (KiB) of the given processes, holds them all until stdin
                                  is closed, then closes them

URLs may be https: the connection then speaks TLS (the certificate is not checked: the bench
makes its own). Send and receive times come from the same machine's clock, so the delay is what the hops in
between (none, nginx, or tokenkeeper) add.
"""

import asyncio
import ssl
import statistics
import sys
import time
from urllib.parse import parse_qs, urlsplit

HEADERS = (
    "HTTP/1.1 200 OK\r\n"
    "content-type: text/event-stream\r\n"
    "cache-control: no-cache\r\n"
    "transfer-encoding: chunked\r\n\r\n"
)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            query = parse_qs(urlsplit(request_line.split(" ")[1]).query)
            events = int(query.get("events", ["10"])[0])
            interval = int(query.get("interval_ms", ["5"])[0]) / 1000
            writer.write(HEADERS.encode())
            for _ in range(events):
                payload = f"data: {time.time_ns()}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                await writer.drain()
                await asyncio.sleep(interval)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def connect(parts):
    """A connection to the proxy; over TLS for https (the bench's own self-signed certificate)."""
    tls = None
    if parts.scheme == "https":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    return await asyncio.open_connection(parts.hostname, parts.port, ssl=tls)


async def open_stream(url, events, interval_ms):
    parts = urlsplit(url)
    reader, writer = await connect(parts)
    path = f"{parts.path}?events={events}&interval_ms={interval_ms}"
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            "authorization: Bearer phantom\r\ncontent-type: application/json\r\n"
            "content-length: 15\r\n\r\n{\"stream\":true}"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{url}: {head[:60]!r}")
    return reader, writer


async def events_of(reader):
    """Yields (send ns, receive ns) per event of a chunked SSE body."""
    buffer = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip(), 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)
        received = time.time_ns()
        buffer += chunk[:-2]
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event.startswith(b"data: "):
                yield int(event[6:]), received


async def delay(url, events, interval_ms):
    reader, writer = await open_stream(url, events, interval_ms)
    delays = [(got - sent) / 1e6 async for sent, got in events_of(reader)]
    writer.close()
    delays.sort()
    p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
    print(f"{statistics.median(delays):.3f} {p99:.3f}")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def hold(url, count, pids):
    streams = []
    for start in range(0, count, 100):
        batch = [open_stream(url, 1_000_000, 1000) for _ in range(start, min(count, start + 100))]
        streams += await asyncio.gather(*batch)
    # Every stream has delivered its first event: all are open end to end.
    for reader, _ in streams:
        await events_of(reader).__anext__()
    print(rss_kib(pids))
    for _, writer in streams:
        writer.close()


async def idle_connection(url):
    parts = urlsplit(url)
    reader, writer = await connect(parts)
    writer.write(
        (
            f"GET {parts.path}?events=1&interval_ms=0 HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            "authorization: Bearer phantom\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{url}: {head[:60]!r}")
    await reader.readuntil(b"0\r\n\r\n")
    return reader, writer


async def crowd(url, idle, count, pids):
    held = []
    for start in range(0, idle, 500):
        batch = [idle_connection(url) for _ in range(start, min(idle, start + 500))]
        held += await asyncio.gather(*batch)
    streams = []
    for start in range(0, count, 100):
        batch = [open_stream(url, 1_000_000, 1000) for _ in range(start, min(count, start + 100))]
        streams += await asyncio.gather(*batch)
    for reader, _ in streams:
        await events_of(reader).__anext__()
    print(rss_kib(pids), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _, writer in held + streams:
        writer.close()


def main():
    mode, *args = sys.argv[1:]
    if mode == "serve":
        asyncio.run(serve(int(args[0])))
    elif mode == "delay":
        asyncio.run(delay(args[0], int(args[1]), int(args[2])))
    elif mode == "hold":
        asyncio.run(hold(args[0], int(args[1]), [int(p) for p in args[2:]]))
    elif mode == "crowd":
        asyncio.run(crowd(args[0], int(args[1]), int(args[2]), [int(p) for p in args[3:]]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
