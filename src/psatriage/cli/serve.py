"""``psatriage serve`` (the web process, and worker processes beside it) and ``psatriage worker``
(a worker process alone).

The web process never runs workers in its own interpreter: webhooks are acknowledged on its event
loop while the workers' CPU is spent in other processes. ``serve`` starts
``PSATRIAGE_WORKER_PROCESSES`` of them, restarts one that dies, and stops them when it stops.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from psatriage.cli._app import _globals, app, console, runtime, settings
from psatriage.errors import ConfigError, PsatriageError

if TYPE_CHECKING:
    import uvicorn


def _log() -> Any:
    """The module's logger, made when first needed (``--help`` imports no logging library)."""
    import structlog

    return structlog.get_logger(__name__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (PSATRIAGE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PSATRIAGE_PORT).")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Web only; run `psatriage worker` elsewhere.")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve beyond this machine with no console user, single sign-on or API token.",
        ),
    ] = False,
) -> None:
    """Run the web server, and worker processes beside it unless --no-worker."""
    import uvicorn

    from psatriage.web import create_app
    from psatriage.web.console import exposure, load_settings

    _key_for_this_run()
    with runtime() as built:
        built.queue.check()  # a queue server that does not answer stops us here
        settings = built.settings
        processes = 0 if no_worker else settings.worker_process_count
        bind_host, bind_port = host or settings.host, port or settings.port
        refused = None if insecure else exposure.refusal(bind_host, built, load_settings())
        if refused:
            raise ConfigError(refused)
        console.print(
            f"psatriage on http://{bind_host}:{bind_port} — "
            f"{len(built.config.tenants)} tenant(s), "
            + (
                f"{processes} worker process(es) of {settings.workers} worker(s)"
                if processes
                else "no worker processes"
            ),
            highlight=False,
        )
        app = create_app(built)
        _freeze_heap()
        server = _server(
            uvicorn.Config(
                app,
                host=bind_host,
                port=bind_port,
                log_config=None,
                access_log=False,
                http="httptools",
                loop="uvloop",
            )
        )
        # the worker processes start once the web process answers: they would otherwise spend
        # the cores on their own start-up while it starts
        with _worker_processes(processes, when=lambda: server.started):
            server.run()
        if not server.started:
            raise typer.Exit(3)  # uvicorn has logged why (the port is taken, ...)


def _key_for_this_run() -> None:
    """On one machine (a SQLite queue) with no ``PSATRIAGE_SECRET_KEY``: a key made for this run,
    in this process's environment and so in its worker processes', so that they share PSA access
    tokens sealed with it (in the file beside the queue's). Tokens of an earlier run cannot be
    read with it, so they are dropped. With a Redis or PostgreSQL queue, processes on other
    machines need the key too: it must be set."""
    from psatriage.settings import shared_server

    current = settings()
    if current.secret_key is not None or shared_server(current.effective_queue_url) is not None:
        return
    from cryptography.fernet import Fernet

    from psatriage.shared.sqlite_backend import for_queue

    os.environ["PSATRIAGE_SECRET_KEY"] = Fernet.generate_key().decode()
    store = for_queue(current.effective_queue_url)
    if not store.path.exists():
        return
    try:
        store.forget_tokens()
    except PsatriageError as exc:  # the processes will replace what they cannot read
        _log().warning("could not drop the last run's shared tokens", error=str(exc))
    finally:
        store.close()


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that, stopped by SIGTERM or SIGINT, returns to ``serve``, which then
    stops its worker processes and ends. (``uvicorn.Server`` raises the signal again once it
    has shut down, ending the process before they are stopped: they were left to notice their
    parent gone.)"""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {signum: signal.signal(signum, self.handle_exit) for signum in handled}
            try:
                yield
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

    return Server(config)


@app.command()
def worker(
    workers: Annotated[
        int | None, typer.Option(help="Tickets in flight at once (PSATRIAGE_WORKERS).", min=1)
    ] = None,
    parent: Annotated[
        int | None, typer.Option(hidden=True, help="Stop when this process is gone.")
    ] = None,
) -> None:
    """Run a worker process only (scale out beside `serve --no-worker`)."""
    from psatriage import jobs

    with runtime() as built:
        built.queue.check()  # a queue server that does not answer stops us here
        if built.settings.worker_nice:
            os.nice(built.settings.worker_nice)
        count = workers or built.settings.workers
        console.print(f"psatriage worker: {count} worker(s)", highlight=False)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        pool = jobs.WorkerPool(built, workers=count).start()
        settled = False
        try:
            while not stop.wait(0.2 if not settled else 1.0):
                if not settled and pool.warmed.is_set():
                    _freeze_heap()  # what the warm-up loaded is here to stay
                    settled = True
                if parent is not None and os.getppid() != parent:
                    _log().warning("the serve process is gone; stopping", parent=parent)
                    break
        finally:
            pool.stop(graceful=True)


def _freeze_heap() -> None:
    """Collect the start-up's garbage once, then leave every object alive now out of the
    garbage collector's later passes (``gc.freeze``): a full pass over a started process's
    objects took about 100 ms, during which no request and no ticket moved (it showed as a
    webhook acknowledgement p99 of 103-192 ms in about half of the paced runs of
    ``bench.pipeline``). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


@contextmanager
def _worker_processes(count: int, *, when: Callable[[], bool] | None = None) -> Iterator[None]:
    """``count`` worker processes, started once ``when()`` is true, restarted when one dies,
    stopped (and waited for) on exit."""
    if count <= 0:
        yield
        return
    command = [sys.executable, "-m", "psatriage"]
    if _globals.config is not None:
        command += ["--config", str(_globals.config)]
    command += ["worker", "--parent", str(os.getpid())]
    stopping = threading.Event()
    children: list[subprocess.Popen[bytes]] = []
    spawning = threading.Lock()  # no child is started once stopping has taken the list

    def start(index: int | None = None) -> None:
        with spawning:
            if stopping.is_set():
                return
            # our own interpreter and arguments only: nothing here comes from a request
            child = subprocess.Popen(command)  # noqa: S603
            if index is None:
                children.append(child)
            else:
                children[index] = child

    def supervise() -> None:
        while when is not None and not when():
            if stopping.wait(0.05):
                return
        for _ in range(count):
            start()
        while not stopping.wait(1.0):
            for index, child in enumerate(list(children)):
                code = child.poll()
                if code is not None and not stopping.is_set():
                    _log().error("a worker process ended; starting another", code=code)
                    if not stopping.wait(1.0):
                        start(index)

    watcher = threading.Thread(target=supervise, name="psatriage-supervisor", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stopping.set()
        with spawning:
            running = list(children)
        for child in running:
            child.terminate()
        for child in running:
            try:
                child.wait(timeout=60)  # running tickets finish first
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        watcher.join(timeout=5)
