# psatriage: one image for every role (web, worker, migrations), chosen by the command.
#
#   docker build -t psatriage .
#   docker run --rm psatriage --version
#
# The local engine is inside: its embeddings ship in the wordllama wheel, so nothing is
# downloaded when the container runs. See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# -- build: the locked dependencies, then the project, into /app/.venv ---------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# dependencies first: this layer is reused until pyproject.toml or uv.lock change
COPY pyproject.toml uv.lock .python-version ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

# -- run: the environment alone, as an unprivileged user ----------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 psatriage \
    && useradd --system --uid 10001 --gid psatriage --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin psatriage \
    && mkdir -p /data /etc/psatriage \
    && chown psatriage:psatriage /data
COPY --from=build /app/.venv /app/.venv
COPY deploy/docker-entrypoint.sh /usr/local/bin/psatriage-entrypoint
COPY examples /usr/share/psatriage/examples
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PSATRIAGE_DATA_DIR=/data \
    PSATRIAGE_CONFIG=/etc/psatriage/psatriage.toml \
    PSATRIAGE_HOST=0.0.0.0 \
    PSATRIAGE_PORT=8080 \
    PSATRIAGE_LOG_FORMAT=json \
    HF_HUB_OFFLINE=1
USER psatriage
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# the web role answers /healthz; the compose file turns this off for workers, which have no port
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PSATRIAGE_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["psatriage-entrypoint"]
CMD ["serve"]
