"""The lean HTTP transport of the service's clients, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from psatriage.classifiers._openai_config import OpenAIConfig
from psatriage.classifiers._openai_config import make_client as make_sdk_client
from psatriage.http import make_client
from psatriage.transport import ConnectionPool, StdlibTransport, httpx2_transport
from tests.fakes.openai import FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        self.server.connections.add(self.client_address)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        if path == "/echo":
            seen = {
                "method": self.command,
                "target": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self._send(200, json.dumps(seen).encode(), Content_Type="application/json")
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip":
            self._send(200, gzip.compress(b'{"zipped": true}'), Content_Encoding="gzip")
        elif path == "/slow":
            time.sleep(2)
            self._send(200, b"late")
        elif path == "/drop":
            self.close_connection = True  # no answer at all
        elif path == "/close":
            self._send(200, b"bye", Connection="close")
            self.close_connection = True
        elif path == "/then-close":  # keep-alive promised, then the server drops it when idle
            self._send(200, b"ok")
            self.close_connection = True
        elif path == "/no-content":
            self.send_response(204)
            self.end_headers()
        else:
            self._send(404, b'{"error": "no such path"}')

    do_GET = do_POST = do_PATCH = do_DELETE = _route


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections: set[tuple[str, int]] = set()
        self.closed = threading.Semaphore(0)  # released as the server closes each connection

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.release()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=StdlibTransport(max_connections=4), timeout=5) as lean:
        yield lean


def test_a_request_and_its_answer_go_through_whole(server: _Server, client: httpx.Client) -> None:
    response = client.post(
        f"{server.url}/echo",
        params={"conditions": 'id = 7 and board = "Help Desk"'},
        json={"text": "printer jam"},
        headers={"X-Tenant": "acme"},
    )
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert response.reason_phrase == "OK"
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["target"] == "/echo?conditions=id+%3D+7+and+board+%3D+%22Help+Desk%22"
    assert seen["headers"]["x-tenant"] == "acme"
    assert seen["headers"]["host"] == server.url.removeprefix("http://")
    assert json.loads(seen["body"]) == {"text": "printer jam"}
    assert client.get(f"{server.url}/missing").status_code == 404


def test_chunked_gzip_and_empty_answers_are_read(server: _Server, client: httpx.Client) -> None:
    assert client.get(f"{server.url}/chunked").content == b"hello chunked world"
    assert client.get(f"{server.url}/gzip").json() == {"zipped": True}  # decoded by httpx
    empty = client.patch(f"{server.url}/no-content", content=b"{}")
    assert empty.status_code == 204
    assert empty.content == b""
    assert client.get(f"{server.url}/echo").status_code == 200  # the connection still works


def test_connections_are_kept_alive_and_reused(server: _Server, client: httpx.Client) -> None:
    for _ in range(5):
        client.get(f"{server.url}/echo")
    assert len(server.connections) == 1


def test_a_connection_the_server_closed_is_not_reused(
    server: _Server, client: httpx.Client
) -> None:
    assert client.get(f"{server.url}/close").content == b"bye"
    assert server.closed.acquire(timeout=30)
    assert client.get(f"{server.url}/then-close").content == b"ok"
    assert server.closed.acquire(timeout=30)  # the server has closed the idle connection
    assert client.get(f"{server.url}/echo").status_code == 200
    assert len(server.connections) == 3


def test_idle_connections_expire() -> None:
    pool = ConnectionPool(
        ssl_context=ssl.create_default_context(), max_connections=2, keepalive_expiry=0.0
    )
    running = _Server()
    threading.Thread(target=running.serve_forever, daemon=True).start()
    try:
        origin = ("http", "127.0.0.1", running.server_address[1])
        for _ in range(3):
            time.sleep(0.01)
            answer = pool.request("GET", origin, "/echo", [(b"Host", b"x")], b"", {})
            assert answer.status == 200
        assert len(running.connections) == 3
    finally:
        pool.close()
        running.shutdown()
        running.server_close()


def test_failures_are_the_clients_own_errors(server: _Server) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with httpx.Client(transport=StdlibTransport(max_connections=1), timeout=0.3) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{closed_port}/")
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{server.url}/slow")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{server.url}/drop")
        with pytest.raises(httpx.UnsupportedProtocol):
            client.get("ftp://127.0.0.1/file")
        assert client.get(f"{server.url}/echo").status_code == 200  # and it goes on


def test_a_full_pool_waits_then_gives_up(server: _Server) -> None:
    timeout = httpx.Timeout(5, pool=0.1)
    with httpx.Client(transport=StdlibTransport(max_connections=1), timeout=timeout) as client:
        slow = threading.Thread(target=client.get, args=(f"{server.url}/slow",))
        slow.start()
        deadline = time.monotonic() + 30
        while not server.connections and time.monotonic() < deadline:
            time.sleep(0.01)  # until the one connection is out with the slow request
        with pytest.raises(httpx.PoolTimeout):
            client.get(f"{server.url}/echo")
        slow.join()
        assert client.get(f"{server.url}/echo").status_code == 200


def _certificate(folder: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem.decode()


def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key, pem = _certificate(tmp_path)
    running = _Server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    running.socket = context.wrap_socket(running.socket, server_side=True)
    threading.Thread(target=running.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{running.server_address[1]}/echo"
    try:
        with (
            httpx.Client(transport=StdlibTransport(max_connections=2)) as default,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            default.get(url)
        trusting = ssl.create_default_context(cadata=pem)
        transport = StdlibTransport(max_connections=2, ssl_context=trusting)
        with httpx.Client(transport=transport) as client:
            assert client.get(url).json()["method"] == "GET"
            assert client.get(url).status_code == 200
        assert len(running.connections) == 1
    finally:
        running.shutdown()
        running.server_close()


_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy in the environment (a developer's machine may name one)."""
    for name in _PROXIES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_proxy")
def test_the_psa_clients_use_it_unless_a_proxy_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with make_client() as client:
        assert isinstance(client._transport, StdlibTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with make_client() as client:
        assert isinstance(client._transport, httpx.HTTPTransport)  # httpx reads the proxy


@pytest.mark.usefixtures("no_proxy")
def test_the_sdk_calls_a_model_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as llm:
        monkeypatch.setenv("TRANSPORT_TEST_KEY", str(llm.api_key))
        config = OpenAIConfig.model_validate(
            {
                "model": "gpt-4o-mini",
                "api_key": "env:TRANSPORT_TEST_KEY",
                "base_url": f"{llm.url}/v1",
            }
        )
        sdk = make_sdk_client(config)
        assert type(sdk._client._transport).__name__ == "Httpx2StdlibTransport"
        models = sdk.models.list()
        assert [model.id for model in models.data]
        sdk.close()


def test_the_sdk_transport_maps_errors_to_httpx2() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with (
        httpx2.Client(transport=httpx2_transport(max_connections=1)) as client,
        pytest.raises(httpx2.ConnectError),
    ):
        client.get(f"http://127.0.0.1:{closed_port}/")


def _scripted(answer: bytes) -> tuple[str, threading.Thread]:
    """A server that answers one request on one connection with ``answer``, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/", thread


@pytest.mark.parametrize(
    ("answer", "status", "headers", "body"),
    [
        (  # HTTP/1.0, no length: the body runs to the end of the connection
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
            200,
            {"content-type": "text/plain"},
            b"to the end",
        ),
        (  # an interim answer first, a folded header, chunk extensions and a trailer
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nX-Folded: one\r\n two\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
            201,
            {"x-folded": "one two"},
            b"abcde",
        ),
        (  # no reason phrase, bare LF line ends
            b"HTTP/1.1 404\nContent-Length: 2\n\nno",
            404,
            {"content-length": "2"},
            b"no",
        ),
    ],
)
def test_answers_are_read_as_http_1_1_writes_them(
    answer: bytes, status: int, headers: dict[str, str], body: bytes
) -> None:
    url, thread = _scripted(answer)
    with httpx.Client(transport=StdlibTransport(max_connections=1)) as client:
        response = client.get(url)
    thread.join()
    assert response.status_code == status
    assert headers.items() <= response.headers.items()
    assert response.content == body


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # closed without a word
        b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # inside a chunk
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",  # not a header
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",  # not a length
    ],
)
def test_a_broken_answer_is_a_protocol_error(answer: bytes) -> None:
    url, thread = _scripted(answer)
    with (
        httpx.Client(transport=StdlibTransport(max_connections=1)) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(url)
    thread.join()
