"""HTTP/1.1 on the standard library's sockets, as the transport of the service's HTTP clients:
``httpx`` (the PSA adapters', ``http.make_client``) and ``httpx2`` (the OpenAI SDK's,
``classifiers._openai_config.make_client``).

Why: on their default transports (``httpcore`` / ``httpcore2`` and their ``h11`` state machines)
the clients alone cost 8–9 ms of CPU a ticket, on this one 4–5 ms (``docs/PERFORMANCE.md`` round
10), and in a burst on 2 cores the CPU a ticket costs sets how late its waves run
(``bench.pipeline --only floor``). This transport
writes a request as one ``sendall`` and reads the answer with its own small HTTP/1.1 reader;
everything above it (URLs, headers, timeouts, errors, decoding ``Content-Encoding``, the SDK's
retries and parsing) is still the client's.

What it keeps of the default: a pool of keep-alive connections a host (at most ``max_connections``
checked out at once, waiting up to the pool timeout for one), a connection idle longer than
``keepalive_expiry`` or closed by the server not reused, TLS with the client's own SSL context
(certificates verified as ``httpx`` verifies them), and the client's exceptions (``ConnectError``,
``ReadTimeout``, ``RemoteProtocolError``...), so retries above see what they saw before. A request
is never sent twice. Proxies from the environment are still ``httpx``'s own transports (a client
mounts them beside this one). HTTP/1.1 only; an answer is read whole before it is returned, which
suits the JSON APIs it serves (no streaming).
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import httpx

Phase = Literal["connect", "write", "read", "pool", "protocol"]
KEEPALIVE_EXPIRY_SECONDS = 5.0  # as httpx's default


class TransportFailure(Exception):
    """Where a request failed and whether it was a timeout; mapped onto the client's errors."""

    def __init__(self, phase: Phase, timeout: bool, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.timeout = timeout


@dataclass
class _Connection:
    sock: socket.socket
    idle_since: float = field(default_factory=time.monotonic)
    reader: io.BufferedReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = self.sock.makefile("rb")

    def reusable(self, now: float, expiry: float) -> bool:
        """Idle for less than ``expiry`` and not closed (nor written to) by the server."""
        if now - self.idle_since > expiry:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable  # an idle connection that can be read was closed by the server

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class ConnectionPool:
    """Keep-alive connections by (scheme, host, port), shared by threads."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
    ) -> None:
        self._ssl = ssl_context
        self._expiry = keepalive_expiry
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False
        # a client dropped without close() (the SDK closes only the clients it made) still
        # closes its idle sockets
        self._finalizer = weakref.finalize(self, _close_idle, self._idle, self._lock)

    def request(
        self,
        method: str,
        origin: tuple[str, str, int],
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        if not self._slots.acquire(timeout=timeouts.get("pool")):
            raise TransportFailure("pool", True, "no connection free in the pool in time")
        try:
            connection = self._idle_connection(origin) or self._connect(origin, timeouts)
            try:
                answer, keep = self._exchange(connection, method, target, headers, body, timeouts)
            except BaseException:
                connection.close()
                raise
            if keep:
                self._put_back(origin, connection)
            else:
                connection.close()
            return answer
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        self._finalizer()

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                waiting = self._idle.get(origin)
                if not waiting:
                    return None
                connection = waiting.pop()  # the most recently used: the least likely stale
            if connection.reusable(now, self._expiry):
                return connection
            connection.close()

    def _put_back(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            if not self._closed:
                self._idle.setdefault(origin, []).append(connection)
                return
        connection.close()

    def _connect(
        self, origin: tuple[str, str, int], timeouts: Mapping[str, float | None]
    ) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeouts.get("connect"))
        except TimeoutError as exc:
            raise TransportFailure("connect", True, f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:
            raise TransportFailure("connect", False, f"connecting to {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise TransportFailure("connect", True, f"TLS with {host}:{port}: {exc}") from exc
        except OSError as exc:  # ssl.SSLError included: a certificate that does not verify
            sock.close()
            raise TransportFailure("connect", False, f"TLS with {host}:{port}: {exc}") from exc
        return _Connection(sock)

    @staticmethod
    def _exchange(
        connection: _Connection,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
    ) -> tuple[Answer, bool]:
        head = [f"{method} {target} HTTP/1.1".encode("ascii")]
        head += [name + b": " + value for name, value in headers]
        sock = connection.sock
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        except TimeoutError as exc:
            raise TransportFailure("write", True, f"sending the request: {exc}") from exc
        except OSError as exc:
            raise TransportFailure("write", False, f"sending the request: {exc}") from exc
        try:
            sock.settimeout(timeouts.get("read"))
            return _read_answer(connection.reader, method)
        except TimeoutError as exc:
            raise TransportFailure("read", True, f"waiting for the answer: {exc}") from exc
        except (_Broken, ValueError) as exc:
            raise TransportFailure("protocol", False, f"reading the answer: {exc}") from exc
        except OSError as exc:
            raise TransportFailure("read", False, f"reading the answer: {exc}") from exc


class _Broken(Exception):
    """The server did not answer in HTTP/1.1 (or closed the connection before it had)."""


_MAX_LINE = 65536
_MAX_HEADERS = 100


def _line(reader: io.BufferedReader) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise _Broken("a line of the answer is too long")
    if not line.endswith(b"\n"):
        raise _Broken("the server closed the connection before the answer ended")
    return line


def _read_answer(reader: io.BufferedReader, method: str) -> tuple[Answer, bool]:
    """The answer on ``reader`` and whether the connection can carry another request.

    Status line and headers as RFC 9112 writes them (interim 1xx answers skipped); the body by
    ``Transfer-Encoding: chunked``, ``Content-Length``, or up to the end of the connection."""
    version, status, reason, headers = _head(reader)
    while 100 <= status < 200 and status != 101:
        version, status, reason, headers = _head(reader)
    fields = {name.lower(): value.lower() for name, value in headers}
    keep = "close" not in fields.get("connection", "")
    if version == b"HTTP/1.0":
        keep = "keep-alive" in fields.get("connection", "")
    if method == "HEAD" or status in {101, 204, 304}:
        body = b""
    elif "chunked" in fields.get("transfer-encoding", ""):
        body = _chunked(reader)
    elif (length := fields.get("content-length")) is not None:
        size = int(length.split(",")[0])
        body = reader.read(size)
        if len(body) < size:
            raise _Broken(f"the answer ended after {len(body)} of {size} bytes")
    else:  # the body runs to the end of the connection
        body, keep = reader.read(), False
    return Answer(status, reason, headers, body), keep


def _head(reader: io.BufferedReader) -> tuple[bytes, int, str, list[tuple[str, str]]]:
    """An answer's status line and headers (folded header lines joined)."""
    first = reader.readline(_MAX_LINE + 1)
    if not first:
        raise _Broken("the server closed the connection without answering")
    version, _, rest = first.rstrip(b"\r\n").partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise _Broken(f"not an HTTP/1.1 status line: {first[:80]!r}")
    headers: list[tuple[str, str]] = []
    while (line := _line(reader)) not in (b"\r\n", b"\n"):
        if len(headers) >= _MAX_HEADERS:
            raise _Broken(f"more than {_MAX_HEADERS} headers")
        if line[:1] in (b" ", b"\t") and headers:  # an obsolete folded continuation
            folded, value = headers[-1]
            headers[-1] = (folded, f"{value} {line.strip().decode('latin-1')}")
            continue
        name, colon, raw = line.partition(b":")
        if not colon:
            raise _Broken(f"not a header line: {line[:80]!r}")
        headers.append((name.strip().decode("latin-1"), raw.strip().decode("latin-1")))
    return version, int(code), reason.decode("latin-1"), headers


def _chunked(reader: io.BufferedReader) -> bytes:
    parts = []
    while True:
        size = int(_line(reader).split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        part = reader.read(size + 2)  # the chunk and its CRLF
        if len(part) < size + 2:
            raise _Broken("the answer ended inside a chunk")
        parts.append(part[:size])
    while _line(reader) not in (b"\r\n", b"\n"):  # trailers: not used
        pass
    return b"".join(parts)


def _close_idle(idle: dict[tuple[str, str, int], list[_Connection]], lock: threading.Lock) -> None:
    with lock:
        connections = [connection for waiting in idle.values() for connection in waiting]
        idle.clear()
    for connection in connections:
        connection.close()


def _origin(url: Any) -> tuple[str, str, int]:
    scheme = str(url.scheme)
    port = url.port or (443 if scheme == "https" else 80)
    return scheme, str(url.host), int(port)


def _target(url: Any) -> str:
    return bytes(url.raw_path).decode("ascii")


_ERRORS: dict[tuple[Phase, bool], str] = {
    ("connect", True): "ConnectTimeout",
    ("connect", False): "ConnectError",
    ("write", True): "WriteTimeout",
    ("write", False): "WriteError",
    ("read", True): "ReadTimeout",
    ("read", False): "ReadError",
    ("pool", True): "PoolTimeout",
    ("protocol", False): "RemoteProtocolError",
}


def _handle(pool: ConnectionPool, library: ModuleType, request: Any) -> Any:
    """One request of ``library`` (``httpx`` or ``httpx2``) through the pool, as its Response."""
    if request.url.scheme not in {"http", "https"}:
        raise library.UnsupportedProtocol(f"{request.url.scheme!r} is not HTTP")
    timeouts = request.extensions.get("timeout", {})
    try:
        answer = pool.request(
            request.method,
            _origin(request.url),
            _target(request.url),
            request.headers.raw,
            request.read(),
            timeouts,
        )
    except TransportFailure as exc:
        error = getattr(library, _ERRORS.get((exc.phase, exc.timeout), "TransportError"))
        raise error(str(exc), request=request) from exc
    return library.Response(
        answer.status,
        headers=answer.headers,
        stream=library.ByteStream(answer.body),
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode()},
        request=request,
    )


class StdlibTransport(httpx.BaseTransport):
    """The transport of ``httpx`` clients (the PSA adapters')."""

    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=max_connections,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = _handle(self._pool, httpx, request)
        return response

    def close(self) -> None:
        self._pool.close()


def httpx2_transport(*, max_connections: int) -> Any:
    """The same transport for the OpenAI SDK's ``httpx2`` clients (imported only here: the SDK
    is loaded where a model is called)."""
    import httpx2

    class Httpx2StdlibTransport(httpx2.BaseTransport):
        def __init__(self) -> None:
            self._pool = ConnectionPool(
                ssl_context=httpx2.create_ssl_context(), max_connections=max_connections
            )

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            response: httpx2.Response = _handle(self._pool, httpx2, request)
            return response

        def close(self) -> None:
            self._pool.close()

    return Httpx2StdlibTransport()
