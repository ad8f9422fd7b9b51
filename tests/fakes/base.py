"""A small real HTTP server on 127.0.0.1 for fakes of external APIs, and the base of PSA fakes.

Each fake subclasses ``FakeServer``, registers routes, and gets for free: a thread-per-connection
HTTP/1.1 server with keep-alive, a log of every request (``requests``, ``requests_to``) and of
every write (``writes``), failures on demand (``fail``), an optional delay for every answer
(``delay``), the most requests it had in flight at once, in all (``max_active``) and per
endpoint (``max_active_by_endpoint``, keyed by ``endpoint_key``), and two hooks for harnesses
that inject faults over time or watch answers as they leave (``interfere``, ``answered``).

A PSA's fake subclasses ``FakePSA``, which adds what they all share: their data under one lock
(``locked`` routes), their credentials as environment variables (``SECRETS``, ``secret_env``),
the tenant's connection table pointing at the fake (``connection_config``), and pages of at most
``max_page_size`` records (``page_of``).

Fakes are used by the test suite and by ``bench/``; they have no test-framework dependency.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the listen backlog, read when the socket starts listening (in the constructor): with the
    # default 5, a burst of new connections overflows it and the client retries a second later
    request_queue_size = 512


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case keys
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        for key, values in self.query.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return default


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]
_ID = re.compile(r"/\d+(?=/|$)")


@dataclass
class Failure:
    """Answer ``status`` (with ``body``/``headers``) to matching requests, ``times`` times."""

    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeServer:
    """Base class: ``route(method, regex, handler)``; ``start()``; ``url``; ``stop()``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._failures: list[Failure] = []
        self._holds: list[tuple[str, re.Pattern[str], threading.Event]] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.writes: list[Request] = []
        self.delay = 0.0
        self.active = 0
        self.max_active = 0
        self.active_by_endpoint: dict[str, int] = defaultdict(int)
        self.max_active_by_endpoint: dict[str, int] = defaultdict(int)
        self.interfere: Callable[[Request], Response | None] | None = None
        """Asked first about every request, as a gateway in front of the server would: a response
        to give instead (the request is then neither logged nor applied), or None to pass it on.
        It may sleep first, as a server that hangs does."""
        self.answered: Callable[[Request, Response], None] | None = None
        """Told of every answer once it is made (the write applied), before it is sent."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern + r"/?$"), handler))

    def fail(
        self,
        method: str,
        pattern: str,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next ``times`` requests matching ``method`` and ``pattern`` get ``status``."""
        with self._lock:
            self._failures.append(
                Failure(
                    method.upper(), re.compile(pattern), status, times, body, headers or {}, delay
                )
            )

    def hold(self, method: str, pattern: str) -> threading.Event:
        """Requests matching ``method`` and ``pattern`` hang (as a PSA that stopped answering)
        until the returned event is set; then they are answered as usual."""
        release = threading.Event()
        compiled = re.compile(pattern)
        with self._lock:
            self._holds.append((method.upper(), compiled, release))
        return release

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def writes_to(self, method: str, pattern: str) -> list[Request]:
        regex = re.compile(pattern)
        with self._lock:
            return [r for r in self.writes if r.method == method.upper() and regex.search(r.path)]

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        """Every request whose path matches ``pattern`` (of ``method``, when given)."""
        regex = re.compile(pattern)
        with self._lock:
            return [
                r
                for r in self.requests
                if regex.search(r.path) and (method is None or r.method == method.upper())
            ]

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> Self:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no delayed ACK

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = _Server(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch -----------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response | None:
        """Override: return a response (e.g. 401) to refuse the request, or None to allow it."""
        return None

    def endpoint_key(self, request: Request) -> str:
        """Override: the endpoint a request counts against in ``max_active_by_endpoint``; by
        default its method and path with numeric segments as ``{id}``."""
        return f"{request.method} {_ID.sub('/{id}', request.path)}"

    def _serve(self, request: Request) -> Response:
        """Log the request, count it in flight, and answer it."""
        endpoint = self.endpoint_key(request)
        with self._lock:
            self.requests.append(request)
            if request.method in {"POST", "PATCH", "PUT", "DELETE"}:
                self.writes.append(request)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.active_by_endpoint[endpoint] += 1
            peak = self.active_by_endpoint[endpoint]
            self.max_active_by_endpoint[endpoint] = max(self.max_active_by_endpoint[endpoint], peak)
        try:
            return self._respond(request)
        finally:
            with self._lock:
                self.active -= 1
                self.active_by_endpoint[endpoint] -= 1

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:  # the client died mid-request: a real server applies nothing
            handler.close_connection = True
            return
        request = Request(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        instead = self.interfere(request) if self.interfere is not None else None
        response = instead if instead is not None else self._serve(request)
        if self.answered is not None:
            self.answered(request, response)
        payload = response.encode()
        try:
            handler.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout)
            handler.close_connection = True

    def _respond(self, request: Request) -> Response:
        with self._lock:
            holds = [r for m, p, r in self._holds if m == request.method and p.search(request.path)]
        for release in holds:
            release.wait(timeout=600)
        failure = self._take_failure(request)
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            return Response(failure.status, failure.body, dict(failure.headers))
        if self.delay:
            time.sleep(self.delay)
        refused = self.authorize(request)
        if refused is not None:
            return refused
        for method, pattern, route in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return route(request)
        return Response(404, {"code": "NotFound", "message": f"no route {request.path}"})

    def _take_failure(self, request: Request) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method in {request.method, "*"} and failure.pattern.search(request.path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None


class FakePSA(FakeServer):
    """Base of the PSA fakes: see the module docstring.

    ``SECRETS`` maps each environment variable the connection table refers to (``env:NAME``) to
    the attribute holding its value; a variable whose attribute is None is left out.
    """

    SECRETS: ClassVar[dict[str, str]] = {}

    def __init__(self, *, max_page_size: int) -> None:
        super().__init__()
        self.max_page_size = max_page_size
        self._data = threading.RLock()

    def secret_env(self) -> dict[str, str]:
        """The environment variables ``connection_config()`` refers to, with their values."""
        values = {name: getattr(self, attribute) for name, attribute in self.SECRETS.items()}
        return {name: value for name, value in values.items() if value is not None}

    def connection(self) -> dict[str, Any]:
        """The tenant's ``[connection]`` table pointing the adapter at this fake."""
        raise NotImplementedError

    def connection_config(self, **overrides: Any) -> dict[str, Any]:
        """``connection()`` with keys replaced; a None value leaves the key out."""
        table = {**self.connection(), **overrides}
        return {key: value for key, value in table.items() if value is not None}

    def locked(self, handler: Handler) -> Handler:
        """``handler`` run while holding the fake's data lock."""

        def run(request: Request) -> Response:
            with self._data:
                return handler(request)

        return run

    def page_of(self, records: list[Any], number: int, size: int) -> tuple[list[Any], bool]:
        """Page ``number`` (from 1) of ``records`` in pages of ``size``, capped at
        ``max_page_size``; and whether more pages follow."""
        size = min(max(1, size), self.max_page_size)
        start = (max(1, number) - 1) * size
        return records[start : start + size], start + size < len(records)
