"""The SQLite write gate: one writing transaction at a time across threads and processes, taken at
the first writing statement and given back however the transaction ends; reads never wait."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from psatriage.store import db

DEADLINE = 60  # seconds: generous for a loaded machine; never asserted on


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = db.make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with made.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))
    yield made
    made.dispose()


def _lock_file(engine: Engine) -> Path:
    return Path(str(engine.url.database) + ".write.lock")


def _gate_is_free(engine: Engine) -> bool:
    """Whether another process could pass the gate now (a separate open file, as it would have)."""
    with _lock_file(engine).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def _in_thread(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_write_holds_the_gate_until_commit_and_a_read_does_not_take_it(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM t"))
        assert _gate_is_free(engine)  # reading takes no turn
        connection.execute(text("INSERT INTO t (who) VALUES ('a')"))
        assert not _gate_is_free(engine)

        counted: list[int] = []
        reader = _in_thread(
            lambda: counted.append(
                engine.connect().execute(text("SELECT count(*) FROM t")).scalar_one()
            )
        )
        reader.join(DEADLINE)
        assert counted == [0]  # a reader meanwhile neither waits nor sees the uncommitted row

        connection.commit()
        assert _gate_is_free(engine)


@pytest.mark.parametrize("end", ["rollback", "error", "close"])
def test_the_gate_is_given_back_however_the_transaction_ends(engine: Engine, end: str) -> None:
    if end == "rollback":
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO t (who) VALUES ('x')"))
            connection.rollback()
            assert _gate_is_free(engine)
    elif end == "error":
        with pytest.raises(RuntimeError), engine.begin() as connection:
            connection.execute(text("INSERT INTO t (who) VALUES ('x')"))
            raise RuntimeError("boom")
    else:
        raw = engine.raw_connection()
        raw.cursor().execute("INSERT INTO t (who) VALUES ('x')")
        raw.invalidate()  # the DBAPI connection closes mid-transaction
    assert _gate_is_free(engine)

    # and the next writer, on another thread, is not kept waiting
    done = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t (who) VALUES ('next')"))
        done.set()

    _in_thread(write).join(DEADLINE)
    assert done.is_set()


def test_a_writer_waits_while_another_process_holds_the_gate(engine: Engine) -> None:
    other = _lock_file(engine).open("a")  # what another process's gate holds
    fcntl.flock(other, fcntl.LOCK_EX)
    order: list[str] = []
    writer = _in_thread(lambda: _insert(engine, "this process", order))
    writer.join(0.5)
    assert writer.is_alive() and not order  # still at the gate
    order.append("the other process let go")
    fcntl.flock(other, fcntl.LOCK_UN)
    other.close()
    writer.join(DEADLINE)
    assert order == ["the other process let go", "this process"]


def test_threads_take_turns_and_none_is_refused(engine: Engine) -> None:
    order: list[str] = []
    writers = [_in_thread(lambda n=n: _insert(engine, f"w{n}", order)) for n in range(16)]
    for writer in writers:
        writer.join(DEADLINE)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 16
    assert sorted(order) == sorted(f"w{n}" for n in range(16))


def _insert(engine: Engine, who: str, order: list[str]) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})
    order.append(who)
