"""The console against the real app: two tenants on the fakes, people of each role, a client."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from psatriage.config import load_config
from psatriage.runtime import Runtime
from psatriage.store.users import Role
from psatriage.web import create_app
from psatriage.web.console.core import Console
from tests.harness import TENANT, Harness, to_toml

PASSWORD = "correct horse battery staple"
OTHER = "globex"  # a second tenant, in shadow mode
PEOPLE = {"ann": Role.ADMIN, "rob": Role.REVIEWER, "val": Role.VIEWER}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def write_tenants(harness: Harness, name: str = "psatriage.toml") -> Path:
    """``acme`` (apply) and ``globex`` (shadow), both on the fakes."""
    path = harness.root / name
    other = {**harness.tenant, "policy": {"mode": "shadow"}}
    path.write_text(to_toml({"tenants": {TENANT: harness.tenant, OTHER: other}}), encoding="utf-8")
    return path


@pytest.fixture
def runtime(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for key, value in harness.env.items():
        monkeypatch.setenv(key, value)
    built = Runtime(harness.settings(), load_config(write_tenants(harness)))
    yield built
    built.close()


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return create_app(runtime)


@pytest.fixture
def console(app: FastAPI) -> Console:
    found: Console = app.state.console
    return found


@pytest.fixture
def people(console: Console) -> dict[str, Role]:
    for name, role in PEOPLE.items():
        console.users.add(name, role, PASSWORD)
    return PEOPLE


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(
    client: TestClient, name: str, password: str = PASSWORD, next_page: str = "/"
) -> httpx.Response:
    form = client.get("/login", params={"next": next_page})
    return client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "name": name,
            "password": password,
            "next": next_page,
        },
    )


@dataclass
class Page:
    """A page as a person sees it: its status and text without the markup."""

    status: int
    text: str


def page(client: TestClient, path: str, **params: str) -> Page:
    response = client.get(path, params=params)
    plain = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text)))
    return Page(response.status_code, plain)
