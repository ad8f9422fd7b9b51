"""Client CPU per HTTP request: the service's worker threads on a synchronous client against one
event loop on the asynchronous client, one request at a time and 32 at once.

Run from the repository root::

    uv run python -m bench.http_clients [--requests N] [--rounds R] [--json]

The question it answers: would a worker that holds its tickets in flight on one event loop spend
less CPU per PSA or model call than the worker threads do now? Two HTTP stacks are measured: the
PSA adapters' (``httpx``) and the OpenAI SDK's (``httpx2``, its own fork, which ``OpenAI`` and
``AsyncOpenAI`` use). A child process serves a keep-alive HTTP/1.1 server
on loopback (an ``asyncio`` protocol that answers every request with the same small JSON body,
so its own cost is out of the measure); this process sends N POSTs with a JSON body (a PSA note's
size) and the headers an adapter sends, after 200 to warm the pool:

- ``httpx threads``: ``psatriage.http.make_client()`` (the adapters' client: its pool, timeouts
  and cookie jar), from a pool of C threads, as C worker threads share one client;
- ``httpx asyncio``: ``httpx.AsyncClient`` with the same limits, C requests in flight on one loop;
- ``httpx2 threads`` and ``httpx2 asyncio``: the same with ``httpx2.Client`` and
  ``httpx2.AsyncClient``.

Reported: this process's CPU time (user + system, every thread) per request, the median of R
rounds taken in turn, for C = 1 and C = 32. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import httpx
import httpx2

from bench.pipeline import _load, machine
from psatriage.http import make_client

BODY = b'{"id": 1, "ticketId": 1000, "text": "noted", "internalAnalysisFlag": true}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
NOTE = {"text": "Category: Hardware > Printer > Jam\n" * 4, "internalAnalysisFlag": True}
HEADERS = {"Authorization": "Basic YmVuY2g6YmVuY2g=", "clientId": "bench", "Accept": "*/*"}
WARM_UP = 200
CONCURRENCY = (1, 32)
STACKS = ("httpx", "httpx2")
READY_SECONDS = 120  # a busy 2-core machine starts a fresh interpreter slowly


class _Answer(asyncio.Protocol):
    """Answers each request on the connection (head, then Content-Length bytes) with ``ANSWER``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(ANSWER)


def _serve(listener: socket.socket, pipe: Connection) -> None:
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, sock=listener)
        async with server:
            pipe.send("ready")
            await server.serve_forever()

    asyncio.run(run())


def _threads(stack: str, url: str, requests: int, concurrency: int) -> float:
    client: Any = (
        make_client(max_connections=64)
        if stack == "httpx"
        else httpx2.Client(
            limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64), timeout=30
        )
    )

    def one(_: int) -> None:
        client.post(url, json=NOTE, headers=HEADERS).raise_for_status()

    with client, ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(WARM_UP)))
        started = time.process_time()
        list(pool.map(one, range(requests)))
        return (time.process_time() - started) / requests


def _asyncio(stack: str, url: str, requests: int, concurrency: int) -> float:
    module: Any = httpx if stack == "httpx" else httpx2

    async def run() -> float:
        limits = module.Limits(max_connections=64, max_keepalive_connections=64)
        async with module.AsyncClient(limits=limits, timeout=30) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    (await client.post(url, json=NOTE, headers=HEADERS)).raise_for_status()

            await asyncio.gather(*(one() for _ in range(WARM_UP)))
            started = time.process_time()
            await asyncio.gather(*(one() for _ in range(requests)))
            return (time.process_time() - started) / requests

    return asyncio.run(run())


def run(requests: int, rounds: int) -> dict[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v4_6_release/apis/3.0/service/notes"
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(listener, child), daemon=True
    )
    load_before = _load()
    server.start()
    try:
        if not parent.poll(READY_SECONDS):
            raise SystemExit(f"the loopback server did not start in {READY_SECONDS} s")
        parent.recv()
        samples: dict[str, list[float]] = {}
        for _ in range(rounds):
            for concurrency in CONCURRENCY:
                for stack in STACKS:
                    for name, measure in (("threads", _threads), ("asyncio", _asyncio)):
                        key = f"{stack} {name} {concurrency}"
                        samples.setdefault(key, []).append(
                            measure(stack, url, requests, concurrency)
                        )
    finally:
        server.terminate()
        server.join()
        listener.close()
    return {
        "machine": machine(),
        "load": [load_before, _load()],
        "requests": requests,
        "rounds": rounds,
        "cpu_us_per_request": {
            key: {
                "median": statistics.median(values) * 1e6,
                "min": min(values) * 1e6,
                "max": max(values) * 1e6,
            }
            for key, values in samples.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests a measure (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds taken in turn (3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be ≥ 1")
    result = run(args.requests, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, cpu in result["cpu_us_per_request"].items():
        stack, name, concurrency = key.split()
        print(
            f"{stack:>6} {name:>7}, {concurrency:>2} in flight: {cpu['median']:6.0f} µs of client "
            f"CPU a request (rounds {cpu['min']:.0f}–{cpu['max']:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
