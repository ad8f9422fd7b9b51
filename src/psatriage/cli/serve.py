"""``psatriage serve`` (web + embedded workers) and ``psatriage worker`` (workers only)."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from psatriage.cli._app import app, console, runtime
from psatriage.errors import ConfigError


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
    """Run the web server, with the workers in the same process unless --no-worker."""
    import uvicorn

    from psatriage.web import create_app
    from psatriage.web.console import exposure, load_settings

    with runtime() as built:
        built.queue.huey.pending_count()  # a queue server that does not answer stops us here
        settings = built.settings
        workers = 0 if no_worker else settings.workers
        bind_host, bind_port = host or settings.host, port or settings.port
        refused = None if insecure else exposure.refusal(bind_host, built, load_settings())
        if refused:
            raise ConfigError(refused)
        console.print(
            f"psatriage on http://{bind_host}:{bind_port} — "
            f"{len(built.config.tenants)} tenant(s), "
            + (f"{workers} embedded worker(s)" if workers else "no embedded workers"),
            highlight=False,
        )
        uvicorn.run(
            create_app(built, embedded_workers=workers),
            host=bind_host,
            port=bind_port,
            log_config=None,
            access_log=False,
            http="httptools",
            loop="uvloop",
        )


@app.command()
def worker(
    workers: Annotated[
        int | None, typer.Option(help="Worker threads (PSATRIAGE_WORKERS).", min=1)
    ] = None,
) -> None:
    """Run queue workers only (scale out beside `serve --no-worker`)."""
    from psatriage import jobs

    with runtime() as built:
        built.queue.huey.pending_count()  # a queue server that does not answer stops us here
        count = workers or built.settings.workers
        console.print(f"psatriage worker: {count} thread(s)", highlight=False)
        consumer = jobs.consumer(built, workers=count, embedded=False)
        stop = threading.Event()
        jobs.housekeeping(built, stop)
        try:
            consumer.run()
        finally:
            stop.set()
