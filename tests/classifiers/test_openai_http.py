"""The OpenAI SDK's HTTP client: the SDK's defaults, no cookies, the lean transport."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx2
import openai
import pytest

from psatriage.classifiers._openai_http import Client, make_http_client

_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXIES:
        monkeypatch.delenv(name, raising=False)


class _CookieSetter(BaseHTTPRequestHandler):
    """Answers every GET with a cookie, and records the Cookie header each request carried."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Cookie"))
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=model-server; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    _CookieSetter.seen = []
    running = ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_address[1]}"
    finally:
        running.shutdown()
        running.server_close()


@pytest.mark.usefixtures("no_proxy")
def test_it_has_the_sdks_defaults_and_the_lean_transport() -> None:
    with make_http_client() as client:
        assert isinstance(client, Client)
        assert type(client._transport).__name__ == "Httpx2StdlibTransport"
        assert client.timeout == openai.DEFAULT_TIMEOUT
        assert client.follow_redirects is True


def test_a_proxy_in_the_environment_keeps_httpx2s_transports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with make_http_client() as client:
        assert isinstance(client, Client)
        assert isinstance(client._transport, httpx2.HTTPTransport)


@pytest.mark.usefixtures("no_proxy")
def test_the_sdk_keeps_no_cookie_a_model_server_sets(server: str) -> None:
    with make_http_client() as http:
        sdk = openai.OpenAI(api_key="sk-test", base_url=f"{server}/v1", http_client=http)
        sdk.models.list()
        sdk.models.list()
        http.cookies = {"session": "given"}  # dropped
        sdk.models.list()
        assert not http.cookies
    assert _CookieSetter.seen == [None, None, None]
