"""Tenants wired to the real HTTP fakes.

``Harness`` is one ConnectWise tenant (FakeConnectWise for the PSA, FakeOpenAI for the model);
``Harness.runtime()`` builds the service exactly as ``psatriage serve`` would (tenants file on disk,
SQLite or PostgreSQL database, the wake-up channel), so tests exercise the real path end to end.
``kit_for`` and ``kit_tenant`` do the same for any PSA, through its fake's contract kit.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psatriage.config import load_config
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.kit import ContractKit
from tests.fakes.openai import DEFAULT_API_KEY, FakeOpenAI

OPENAI_KEY_ENV = "PSATRIAGE_TEST_OPENAI_KEY"
TENANT = "acme"


def openai_classifier(llm: FakeOpenAI) -> dict[str, Any]:
    """The ``[classifier]`` table of a tenant whose model is ``llm`` (key in ``OPENAI_KEY_ENV``)."""
    return {
        "kind": "openai",
        "model": "gpt-4o-mini",
        "api_key": f"env:{OPENAI_KEY_ENV}",
        "base_url": f"{llm.url}/v1",
        "inner_retries": 0,
        "timeout_seconds": 5,
    }


def kit_for(kind: str) -> ContractKit:
    """The started contract kit of the PSA ``kind`` (its fake is ``tests/fakes/<kind>.py``)."""
    made: ContractKit = importlib.import_module(f"tests.fakes.{kind}").kit()
    return made


def kit_tenant(kit: ContractKit, llm: FakeOpenAI) -> dict[str, Any]:
    """A ``[tenants.NAME]`` table for the kit's PSA, taking webhooks, with ``llm`` as its model."""
    return {
        "psa": kit.psa,
        "trigger": "webhook",
        "connection": kit.connection,
        "classifier": openai_classifier(llm),
    }


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid``, from ``/proc`` (Linux)."""
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a process a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Just enough TOML for tenants files: tables, strings, numbers, booleans, lists."""
    scalars, tables = [], []
    for key, value in data.items():
        name = key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)
        if isinstance(value, Mapping):
            tables.append(to_toml(value, f"{prefix}{name}."))
        else:
            scalars.append(f"{name} = {json.dumps(value)}")
    header = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    body = header + "".join(line + "\n" for line in scalars)
    return body + "".join(("\n" if body or i else "") + t for i, t in enumerate(tables))


@dataclass
class Harness:
    cw: FakeConnectWise
    llm: FakeOpenAI
    root: Path
    tenant: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tenant = {
            "psa": "connectwise",
            "connection": self.cw.connection_config(),
            "classifier": openai_classifier(self.llm),
            "policy": {"mode": "apply"},
        }

    @property
    def env(self) -> dict[str, str]:
        return {**self.cw.secret_env(), OPENAI_KEY_ENV: DEFAULT_API_KEY}

    def write_config(self, **sections: Mapping[str, Any]) -> Path:
        tenant = {**self.tenant}
        for name, values in sections.items():
            tenant[name] = {**tenant.get(name, {}), **values}
        path = self.root / "psatriage.toml"
        path.write_text(to_toml({"tenants": {TENANT: tenant}}), encoding="utf-8")
        return path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.root / "data",
            "config": self.root / "psatriage.toml",
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "queue_poll_seconds": 0.01,
        }
        values.update(overrides)
        return Settings(**values)

    def runtime(self, settings: Settings | None = None, **sections: Mapping[str, Any]) -> Runtime:
        path = self.write_config(**sections)
        os.environ.update(self.env)
        return Runtime(settings or self.settings(), load_config(path))
