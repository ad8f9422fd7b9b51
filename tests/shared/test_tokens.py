"""Shared tokens: the encrypted store on real Redis and PostgreSQL, its lock across processes, its
fallback when the server is away, the secret key setting, the Runtime sharing them where a
tenant's adapter needs a token cache, and HaloPSA adapters in two real worker processes sharing
one token."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from structlog.testing import capture_logs

from psatriage.errors import ConfigError
from psatriage.http import make_client
from psatriage.psa import adapters
from psatriage.psa.halopsa import HaloPSAAdapter, HaloPSAConfig
from psatriage.runtime import Runtime
from psatriage.settings import Settings
from psatriage.shared import tokens as shared_tokens
from psatriage.shared.base import TokenStore
from psatriage.shared.postgres_backend import PostgresBackend
from psatriage.shared.redis_backend import RedisBackend
from psatriage.shared.sqlite_backend import SqliteBackend, for_queue
from psatriage.shared.tokens import SharedTokens, tokens_for
from tests.fakes.base import FakePSA
from tests.fakes.connectwise import FakeConnectWise
from tests.fakes.halopsa import FakeHaloPSA
from tests.fakes.kaseya_bms import FakeKaseyaBMS
from tests.harness import to_toml
from tests.shared.conftest import Database

KEY = SecretStr(Fernet.generate_key().decode())
OTHER_KEY = SecretStr(Fernet.generate_key().decode())
PLAIN = "eyJhbGciOi-plain-access-token-0123456789"


@pytest.fixture
def two_stores(shared_url: str) -> Iterator[tuple[SharedTokens, SharedTokens]]:
    """Two stores on one server, standing for two worker processes."""
    first, second = tokens_for(shared_url, KEY), tokens_for(shared_url, KEY)
    assert first is not None and second is not None
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def raw_values(url: str) -> list[bytes]:
    """Everything the server holds for the shared tokens, as stored."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(for_queue(url).path)) as connection:
            rows = connection.execute("SELECT name, value FROM shared_tokens").fetchall()
        return [name.encode() + b"=" + bytes(value) for name, value in rows]
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        try:
            return [client.get(key) or b"" for key in client.keys("psatriage:shared:*")]
        finally:
            client.close()
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT name, value FROM psatriage_shared_tokens").fetchall()
    return [name.encode() + b"=" + bytes(value) for name, value in rows]


def copy_value(url: str, source: str, target: str) -> None:
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(for_queue(url).path)) as connection, connection:
            connection.execute(
                "INSERT INTO shared_tokens SELECT ?, value, expires_at FROM shared_tokens "
                "WHERE name = ?",
                (target, source),
            )
        return
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        client.set(f"psatriage:shared:{target}", client.get(f"psatriage:shared:{source}") or b"")
        client.close()
        return
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO psatriage_shared_tokens SELECT %s, value, expires_at "
            "FROM psatriage_shared_tokens WHERE name = %s",
            (target, source),
        )


# -- the store --------------------------------------------------------------------------------


def test_a_value_put_by_one_process_is_read_by_another_and_stored_encrypted(
    shared_url: str, two_stores: tuple[SharedTokens, SharedTokens]
) -> None:
    first, second = two_stores
    expires_at = time.time() + 600
    assert second.get("halopsa:app") is None
    first.put("halopsa:app", PLAIN, expires_at)
    assert second.get("halopsa:app") == (PLAIN, pytest.approx(expires_at))
    assert second.get("halopsa:other") is None
    (stored,) = raw_values(shared_url)
    assert PLAIN.encode() not in stored and b"plain-access-token" not in stored
    second.put("halopsa:app", "renewed-token", expires_at + 60)  # replaces the first
    assert first.get("halopsa:app") == ("renewed-token", pytest.approx(expires_at + 60))
    assert len(raw_values(shared_url)) == 1


def test_an_expired_value_is_gone(two_stores: tuple[SharedTokens, SharedTokens]) -> None:
    first, second = two_stores
    first.put("halopsa:app", PLAIN, time.time() + 1)
    first.put("halopsa:past", PLAIN, time.time() - 1)
    assert second.get("halopsa:app") is not None
    assert second.get("halopsa:past") is None
    time.sleep(1.1)
    assert second.get("halopsa:app") is None


def test_a_value_under_another_key_or_name_is_ignored_then_replaced(
    shared_url: str, two_stores: tuple[SharedTokens, SharedTokens]
) -> None:
    first, _ = two_stores
    first.put("halopsa:app", PLAIN, time.time() + 600)
    rekeyed = tokens_for(shared_url, OTHER_KEY)  # a process started with another key
    assert rekeyed is not None
    try:
        with capture_logs() as logs:
            assert rekeyed.get("halopsa:app") is None
        assert "PSATRIAGE_SECRET_KEY" in logs[0]["event"]
        rekeyed.put("halopsa:app", "from-the-new-key", time.time() + 600)
        assert rekeyed.get("halopsa:app") == ("from-the-new-key", pytest.approx(time.time() + 600))
        assert first.get("halopsa:app") is None  # and now the old key's processes ignore it
    finally:
        rekeyed.close()
    first.put("halopsa:app", PLAIN, time.time() + 600)
    copy_value(shared_url, "halopsa:app", "halopsa:moved")  # sealed with its name: refused
    assert first.get("halopsa:moved") is None


def test_the_refresh_lock_is_held_by_one_process_at_a_time(
    two_stores: tuple[SharedTokens, SharedTokens],
) -> None:
    first, second = two_stores
    with first.refreshing("halopsa:app", 5) as held:
        assert held
        started = time.monotonic()
        with capture_logs() as logs, second.refreshing("halopsa:app", 0.3) as other:
            assert not other  # still runs the block, without the lock
        assert time.monotonic() - started >= 0.3
        assert "stayed taken" in logs[0]["event"]
        with second.refreshing("halopsa:other", 0.3) as elsewhere:
            assert elsewhere  # one lock per name
    waited: list[float] = []

    def wait_for_it() -> None:
        begun = time.monotonic()
        with second.refreshing("halopsa:app", 5) as got:
            assert got
            waited.append(time.monotonic() - begun)

    with first.refreshing("halopsa:app", 5):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(0.3)
    waiter.join()
    assert 0.1 < waited[0] < 2  # had it as soon as the first let go


def _hold_the_lock_then_hang(url: str, holding: Event) -> None:
    """A worker process that dies (SIGKILL) while it renews the token."""
    backend: TokenStore
    if url.startswith("sqlite"):
        backend = for_queue(url)
    elif url.startswith("redis"):
        backend = RedisBackend(url, lease=1.0)
    else:
        backend = PostgresBackend(url)
    with SharedTokens(backend, KEY).refreshing("halopsa:app", 5) as held:
        assert held
        holding.set()
        time.sleep(60)


@pytest.mark.slow  # starts a Python process (about 1 s)
def test_the_lock_of_a_process_that_died_holding_it_comes_back(
    two_stores: tuple[SharedTokens, SharedTokens], shared_url: str
) -> None:
    spawn = multiprocessing.get_context("spawn")
    holding = spawn.Event()
    holder = spawn.Process(target=_hold_the_lock_then_hang, args=(shared_url, holding))
    holder.start()
    try:
        assert holding.wait(30)
        with two_stores[0].refreshing("halopsa:app", 0.2) as held:
            assert not held
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        started = time.monotonic()
        with two_stores[0].refreshing("halopsa:app", 10) as held:
            assert held  # SQLite, PostgreSQL: at once (the process, the session died); Redis:
            # when the lease lapsed
        print(f"lock back after {time.monotonic() - started:.2f} s")
    finally:
        holder.kill()
        holder.join(10)


@pytest.mark.parametrize(
    "backend",
    [
        lambda: RedisBackend("redis://127.0.0.1:1/0"),
        lambda: PostgresBackend("postgresql://postgres@127.0.0.1:1/none"),
        lambda: SqliteBackend(Path("/proc/no-such-folder/queue.db.shared")),
    ],
    ids=["redis", "postgresql", "sqlite"],
)
def test_a_store_that_does_not_answer_is_skipped_with_one_warning(backend: Any) -> None:
    store = SharedTokens(backend(), KEY, pause=1.0)
    try:
        with capture_logs() as logs:
            assert store.get("halopsa:app") is None
            store.put("halopsa:app", PLAIN, time.time() + 600)
            with store.refreshing("halopsa:app", 5) as held:
                assert not held
        assert len(logs) == 1 and logs[0]["log_level"] == "warning"
        assert "the queue's" in logs[0]["event"] and "did not answer" in logs[0]["event"]
        assert PLAIN not in str(logs)
        time.sleep(1.1)
        with capture_logs() as logs:  # tried again after the pause
            assert store.get("halopsa:app") is None
        assert len(logs) == 1
    finally:
        store.close()


def test_postgres_tokens_reconnect_after_the_server_ends_the_connection(
    database: Database,
) -> None:
    store = tokens_for(database.url, KEY)
    assert store is not None
    try:
        store.put("halopsa:app", PLAIN, time.time() + 600)
        assert database.end_sessions() == 1
        with capture_logs() as logs:
            assert store.get("halopsa:app") == (PLAIN, pytest.approx(time.time() + 600, abs=5))
        assert [entry["log_level"] for entry in logs] == ["info"]  # reconnected, no warning
    finally:
        store.close()


def test_redis_tokens_recover_from_a_dropped_connection(redis_url: str) -> None:
    store = tokens_for(redis_url, KEY)
    assert store is not None
    admin = redis.Redis.from_url(redis_url)
    try:
        store.put("halopsa:app", PLAIN, time.time() + 600)
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        admin.script_flush()  # a restarted server has forgotten the release script too
        assert store.get("halopsa:app") is not None
        with store.refreshing("halopsa:app", 1) as held:
            assert held
        with store.refreshing("halopsa:app", 1) as held:
            assert held  # released by the reloaded script
    finally:
        store.close()
        admin.close()


# -- choosing the store, and the key ----------------------------------------------------------


def test_tokens_are_shared_only_with_a_key(redis_url: str, tmp_path: Path) -> None:
    """Without a key a Redis or PostgreSQL queue warns (its processes may be on many machines);
    on a SQLite queue, ``serve`` makes a key for its own processes and others keep their own."""
    one_machine = f"sqlite:///{tmp_path / 'queue.db'}"
    with capture_logs() as logs:
        assert tokens_for(one_machine, None) is None
    assert not logs
    on_file = tokens_for(one_machine, KEY)
    assert on_file is not None
    assert "SQLite file" in repr(on_file)
    on_file.close()
    with capture_logs() as logs:
        assert tokens_for(redis_url, None) is None
        assert tokens_for("postgresql+psycopg://db/psatriage", None) is None
    assert len(logs) == 2 and all(entry["log_level"] == "warning" for entry in logs)
    assert "PSATRIAGE_SECRET_KEY" in logs[0]["event"] and "Fernet.generate_key" in logs[0]["event"]
    store = tokens_for(redis_url, KEY)
    assert store is not None
    assert KEY.get_secret_value() not in repr(store)
    store.close()


FAKES: dict[str, type[FakePSA]] = {
    "connectwise": FakeConnectWise,
    "halopsa": FakeHaloPSA,
    "kaseya_bms": FakeKaseyaBMS,
}


def test_the_runtime_shares_tokens_where_an_adapter_needs_them_and_warns_once_without_a_key(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = tmp_path / "psatriage.toml"
    tenants.write_text("", encoding="utf-8")
    settings = Settings(data_dir=tmp_path, config=tenants, queue_url=redis_url)
    with capture_logs() as logs:  # no tenant: nothing to share, nothing to warn about
        Runtime(settings).close()
    assert not [e for e in logs if "PSATRIAGE_SECRET_KEY" in e["event"]]
    for psa, fake_class in FAKES.items():
        needs = adapters()[psa].needs_token_cache
        assert needs == (psa != "connectwise")  # ConnectWise sends its keys with every call
        with fake_class() as fake:
            for name, value in fake.secret_env().items():
                monkeypatch.setenv(name, value)
            tenant = {"psa": psa, "connection": fake.connection_config(), "trigger": "poll",
                      "classifier": {"kind": "local"}}  # fmt: skip
            tenants.write_text(to_toml({"tenants": {"acme": tenant}}), encoding="utf-8")
            with capture_logs() as logs:
                Runtime(settings, migrate=False).close()
            warned = [e for e in logs if "PSATRIAGE_SECRET_KEY" in e["event"]]
            assert len(warned) == needs and all(e["log_level"] == "warning" for e in warned), psa
            assert shared_tokens.current() is None
            runtime = Runtime(settings.model_copy(update={"secret_key": KEY}), migrate=False)
            try:
                assert shared_tokens.current() is runtime._tokens
                assert (runtime._tokens is not None) == needs, psa
            finally:
                runtime.close()
        assert shared_tokens.current() is None


@pytest.mark.parametrize("value", ["not-a-key", "c2hvcnQ=", Fernet.generate_key().decode()[:-2]])
def test_an_invalid_secret_key_is_refused_at_load_without_showing_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSATRIAGE_SECRET_KEY", value)
    with pytest.raises(ConfigError) as caught:
        Settings()
    message = str(caught.value)
    assert "PSATRIAGE_SECRET_KEY" in message and "Fernet.generate_key()" in message
    assert value not in message


def test_a_valid_secret_key_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSATRIAGE_SECRET_KEY", f" {KEY.get_secret_value()}\n")
    settings = Settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == KEY.get_secret_value()
    assert KEY.get_secret_value() not in repr(settings) + str(settings)
    monkeypatch.setenv("PSATRIAGE_SECRET_KEY", "")
    assert Settings().secret_key is None


# -- HaloPSA workers in two real processes ----------------------------------------------------


def _halo_worker(
    queue_url: str, key: str, connection: dict[str, Any], ticket: str, step: Barrier
) -> None:
    """A worker process: four threads reading the ticket five times each, twice over (the test
    invalidates the token in between)."""
    store = tokens_for(queue_url, SecretStr(key))
    shared_tokens.share_tokens(store)
    with make_client(timeout=10) as http:
        adapter = HaloPSAAdapter("acme", HaloPSAConfig.model_validate(connection), http)
        errors: list[BaseException] = []

        def work() -> None:
            for _ in range(5):
                try:
                    adapter.get_ticket(ticket)
                except Exception as exc:  # noqa: BLE001 - reported by the exit code
                    errors.append(exc)

        for _ in range(2):
            step.wait(timeout=60)  # both processes (and the test) ready: calls overlap
            threads = [threading.Thread(target=work) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            step.wait(timeout=60)
    assert store is not None
    store.close()
    if errors:
        raise SystemExit(f"{len(errors)} calls failed: {errors[0]!r}")


@pytest.mark.slow  # starts two Python processes (about 3 s, mostly their imports)
def test_two_worker_processes_share_one_token(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHaloPSA() as fake:
        for name, value in fake.secret_env().items():
            monkeypatch.setenv(name, value)  # inherited by the processes
        fake.token_delay = 0.2  # both processes ask at the same moment
        ticket = str(fake.add_ticket("VPN", "Down"))
        spawn = multiprocessing.get_context("spawn")
        step = spawn.Barrier(3)
        args = (shared_url, KEY.get_secret_value(), fake.connection_config(), ticket, step)
        workers = [spawn.Process(target=_halo_worker, args=args) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            step.wait(timeout=60)  # first round: 40 calls from 8 threads in 2 processes
            step.wait(timeout=60)
            first_round = fake.token_requests()
            fake.issue_token()  # Halo rejects the shared token from now on
            step.wait(timeout=60)  # second round: every thread's next call gets a 401
            step.wait(timeout=60)
        finally:
            for worker in workers:
                worker.join(timeout=60)
        assert [w.exitcode for w in workers] == [0, 0]  # no AuthFailed, no other error
        calls = len(fake.requests_to(rf"/api/Tickets/{ticket}$"))
        print(f"token requests: {first_round}, then {fake.token_requests()}; calls: {calls}")
        assert first_round == 1
        assert fake.token_requests() == 2  # one renewal for both processes
