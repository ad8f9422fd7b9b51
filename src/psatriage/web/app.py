"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from psatriage import __version__, jobs
from psatriage.runtime import Runtime
from psatriage.web import accuracy, api, console, reports, reviews, webhooks


def create_app(runtime: Runtime, *, embedded_workers: int = 0) -> FastAPI:
    """The web app for ``runtime``; with ``embedded_workers`` it also runs the queue consumer."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        consumer = None
        stop = threading.Event()
        if embedded_workers:
            consumer = jobs.consumer(runtime, workers=embedded_workers, embedded=True)
            consumer.start()
            jobs.housekeeping(runtime, stop)
        try:
            yield
        finally:
            stop.set()
            if consumer is not None:
                consumer.stop(graceful=True)
            pages.stop()  # its background checks use connections the runtime will close

    app = FastAPI(
        title="psatriage",
        version=__version__,
        summary="Categorizes new PSA tickets into the PSA's own category tree.",
        lifespan=lifespan,
        docs_url=None,  # the console serves /docs with local files (no CDN)
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.include_router(reviews.router)
    app.include_router(reports.router)
    app.include_router(accuracy.router)
    pages = console.install(app, runtime)
    return app
