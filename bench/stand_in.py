"""A stand-in for ``psatriage serve`` in a throughput burst: a ticket's HTTP calls, nothing else.

``bench.pipeline --only floor`` runs it in place of the service, against the same fakes and the
same burst, to measure what the machine, the fakes and the HTTP clients allow by themselves: the
webhook is answered 202 without being verified or stored, and each ticket is one replay of the
calls the service made for a recorded ticket (the PSA read, the model call, the PSA writes), with
the ticket's id put in. No database, no queue, no prompt, no decision.

Its shape follows ``serve``: a web process (this one) hands the tickets' ids to ``--processes``
worker processes of ``workers / processes`` threads each, and a thread takes the next ticket as
soon as it has finished the last. ``client`` chooses the HTTP clients, ``PSA+model`` or one name
for both: ``stdlib`` (``http.client``, the least Python a request can cost; a connection a thread
and a server); ``httpx`` for the PSA and ``sdk`` for the model on their default transports (one
``httpx.Client``, the ``openai`` SDK called as the classifier calls it, each shared by a
process's threads); ``httpx-lean`` and ``sdk-lean``, the same on ``psatriage.transport``, as the
service has them.

Run by the bench: ``python -m bench.stand_in SPEC.json --port N``; the spec is JSON::

    {"workers": 64, "processes": 2, "client": "httpx+sdk",
     "servers": {"cw": "http://127.0.0.1:…", "llm": "http://127.0.0.1:…"},
     "plan": [{"server": "cw", "method": "GET", "path": "…/service/tickets/{ticket}/notes",
               "query": {"pageSize": ["1000"]}, "headers": {…}, "body": ""}, …]}
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import re
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import openai

from psatriage.classifiers._openai_request import completion_of
from psatriage.transport import StdlibTransport, httpx2_transport

_CHAT = "/chat/completions"
_TICKET = "{ticket}"

Caller = Callable[[dict[str, Any], int], None]


def _path(call: dict[str, Any], ticket: int) -> str:
    path = str(call["path"]).replace(_TICKET, str(ticket))
    query = urlencode(call["query"], doseq=True)
    return f"{path}?{query}" if query else path


class _Stdlib:
    """Keep-alive ``http.client`` connections of one thread, one a server."""

    def __init__(self, servers: dict[str, str]) -> None:
        self._connections = {}
        for name, url in servers.items():
            parts = urlsplit(url)
            self._connections[name] = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=60
            )

    def __call__(self, call: dict[str, Any], ticket: int) -> None:
        connection = self._connections[call["server"]]
        body = call["body"].encode() or None
        path = _path(call, ticket)
        connection.request(call["method"], path, body=body, headers=call["headers"])
        response = connection.getresponse()
        answer = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{call['method']} {path} answered {response.status}")
        if answer:
            json.loads(answer)


class _Httpx:
    """One ``httpx.Client`` shared by the process's threads, as a tenant's PSA adapter shares it."""

    def __init__(self, servers: dict[str, str], *, lean: bool = False) -> None:
        self._servers = servers
        transport = StdlibTransport(max_connections=64) if lean else None
        self._client = httpx.Client(
            timeout=60, limits=httpx.Limits(max_connections=64), transport=transport
        )

    def __call__(self, call: dict[str, Any], ticket: int) -> None:
        url = self._servers[call["server"]] + _path(call, ticket)
        body = call["body"].encode()
        response = self._client.request(call["method"], url, content=body, headers=call["headers"])
        if response.status_code >= 300:
            raise RuntimeError(f"{call['method']} {url} answered {response.status_code}")
        if response.content:
            response.json()


class _Sdk:
    """The ``openai`` SDK's client shared by the process's threads, called and read as the
    classifier calls and reads it (``_openai_request``: the client's ``post``, the answer
    validated into the SDK's ``ChatCompletion``), and the message's JSON read."""

    def __init__(
        self, servers: dict[str, str], plan: list[dict[str, Any]], *, lean: bool = False
    ) -> None:
        self._clients: dict[str, openai.OpenAI] = {}
        for call in plan:
            if call["server"] == "llm" and call["path"].endswith(_CHAT):
                base = servers["llm"] + call["path"][: -len(_CHAT)]
                key = call["headers"].get("authorization", "Bearer x").split(" ", 1)[-1]
                http_client = (
                    openai.DefaultHttpx2Client(transport=httpx2_transport(max_connections=64))
                    if lean
                    else None
                )
                self._clients[call["path"]] = openai.OpenAI(
                    base_url=base, api_key=key, timeout=60, max_retries=0, http_client=http_client
                )

    def __call__(self, call: dict[str, Any], ticket: int) -> None:
        content = self._clients[call["path"]].post(
            "/chat/completions",
            cast_to=bytes,
            body=json.loads(call["body"]),
            options={"security": {"bearer_auth": True}},
        )
        completion = completion_of(content)
        assert not isinstance(completion, str), completion
        json.loads(completion.choices[0].message.content or "null")


def _worker_process(spec: dict[str, Any], tickets: Any, ready: Event, threads: int) -> None:
    psa_client, model_client = (
        spec["client"].split("+") if "+" in spec["client"] else ((spec["client"], spec["client"]))
    )
    shared: dict[str, Caller] = {}
    if psa_client != "stdlib":
        shared["cw"] = _Httpx(spec["servers"], lean=psa_client == "httpx-lean")
    if model_client != "stdlib":
        shared["llm"] = _Sdk(spec["servers"], spec["plan"], lean=model_client == "sdk-lean")

    def work() -> None:
        own = _Stdlib(spec["servers"])
        callers = {name: shared.get(name, own) for name in spec["servers"]}
        while (ticket := tickets.get()) is not None:
            try:
                for call in spec["plan"]:
                    callers[call["server"]](call, ticket)
            except Exception as exc:  # noqa: BLE001 - a stand-in reports and goes on
                print(f"stand-in: ticket {ticket}: {exc}", file=sys.stderr, flush=True)

    running = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for thread in running:
        thread.start()
    ready.set()
    for thread in running:
        thread.join()


def _server(port: int, put: Callable[[int], None]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/readyz" else 404, b"{}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not re.fullmatch(r"/webhooks/[^/]+", self.path):
                self._answer(404, b"{}")
                return
            put(int(json.loads(body)["ID"]))
            self._answer(202, b'{"event_id": 0}')

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512

    return Server(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stand_in", description=__doc__)
    parser.add_argument("spec", help="the spec file (JSON)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    processes = max(1, int(spec["processes"]))
    context = multiprocessing.get_context("spawn")
    tickets = context.Queue()
    ready = []
    for index in range(processes):
        threads = spec["workers"] // processes + (index < spec["workers"] % processes)
        ready.append(context.Event())
        context.Process(
            target=_worker_process, args=(spec, tickets, ready[-1], threads), daemon=True
        ).start()
    for event in ready:
        event.wait()
    server = _server(args.port, tickets.put)
    # SIGTERM (the bench's stop) exits through Python, which stops the worker processes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
