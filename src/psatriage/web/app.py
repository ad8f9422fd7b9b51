"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from psatriage import __version__, jobs
from psatriage.runtime import Runtime
from psatriage.web import accuracy, api, console, reports, reviews, webhooks


def create_app(runtime: Runtime, *, embedded_workers: int = 0) -> FastAPI:
    """The web app for ``runtime``; with ``embedded_workers`` it also runs a worker pool in the
    same process (tests and small setups; ``psatriage serve`` runs worker processes instead)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = jobs.WorkerPool(runtime, workers=embedded_workers) if embedded_workers else None
        if pool is not None:
            pool.start()
        try:
            yield
        finally:
            if pool is not None:
                pool.stop(graceful=True)
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
    app.state.backlog = webhooks.Backlog(runtime)
    app.state.recorder = webhooks.Recorder(runtime)
    app.include_router(webhooks.router)
    app.add_middleware(webhooks.AcceptPath)
    app.include_router(api.router)
    app.include_router(reviews.router)
    app.include_router(reports.router)
    app.include_router(accuracy.router)
    pages = console.install(app, runtime)
    return app
