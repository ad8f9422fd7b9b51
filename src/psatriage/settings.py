"""Process settings, from ``PSATRIAGE_*`` environment variables.

These say where this process keeps its state and how it runs; what each MSP tenant wants lives in
the tenants file (see ``config.py``). Nothing is read at import time: call ``get_settings()``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from psatriage.errors import ConfigError

_DEFAULT_DATA_DIR = Path("data")
_MAX_WORKER_PROCESSES = 64
MAX_AUTO_WORKER_PROCESSES = 4
"""The most worker processes ``PSATRIAGE_WORKER_PROCESSES=auto`` starts, however many cores."""
PLACEHOLDER = "change-me"
"""What ``deploy/psatriage.env.example`` holds where a secret goes."""
_MAKE_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class Settings(BaseSettings):
    """Everything a psatriage process needs to start, with embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="PSATRIAGE_", extra="ignore")

    data_dir: Path = Field(
        default=_DEFAULT_DATA_DIR,
        description="Folder for the default SQLite database and queue files.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the database. Default: a SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    queue_url: str = Field(
        default="",
        description="How the web process wakes idle workers (the events table is the queue): "
        "sqlite:///PATH (default: sockets beside a file in data_dir, one machine), "
        "redis://host:port/db, or postgresql://user@host/db. Worker processes on several "
        "machines need Redis or PostgreSQL; PSA call limits and tokens are shared there too.",
    )
    config: Path = Field(
        default=Path("psatriage.toml"),
        description="The tenants file (TOML). A missing default file means no tenants yet.",
    )
    host: str = Field(default="127.0.0.1", description="Address the web server binds to.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the web server binds to.")
    workers: int = Field(
        default=8,
        ge=1,
        le=512,
        description="Tickets a worker process has at the classifier at once (its workers; for a "
        "model server, its calls in flight).",
    )
    worker_lookahead: int = Field(
        default=1,
        ge=0,
        le=4,
        description="Tickets each worker holds beside the one at the classifier: they read their "
        "ticket before their turn and write their category and note after it, so the model "
        "never waits for that work. A worker process holds workers × (1 + this) tickets; 0: one "
        "ticket a worker, read, classified and written in turn.",
    )
    worker_processes: int | Literal["auto"] = Field(
        default="auto",
        description="Worker processes `psatriage serve` starts beside its web process: a number "
        "(0: none, as with --no-worker), or auto: one per core the machine gives the process "
        f"(at most {MAX_AUTO_WORKER_PROCESSES}). They share the PSA call limits, alert-storm "
        "locks and access tokens through the queue's server, or a file beside its SQLite file. "
        "More processes use more cores, and more memory (each loads the tenants' classifiers).",
    )
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much a `psatriage worker` process lowers its own scheduling priority "
        "(Unix niceness, added to what it started with): when a busy worker and the web process "
        "share the cores, the web process gets them first, so webhooks are acknowledged at once. "
        "0 keeps the priority it was started with.",
    )
    tenant_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="When several tenants are configured, the share of a worker process's "
        "workers one tenant may hold at once unless it sets max_workers (its bulkhead): a tenant "
        "whose PSA or model hangs cannot take every worker.",
    )
    max_waiting: int = Field(
        default=100_000,
        ge=1,
        description="Events waiting for a worker beyond which webhooks are refused with 503 and "
        "Retry-After (the PSA sends them again later) instead of growing the backlog.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    log_format: Literal["console", "json"] = Field(
        default="console", description="json in production, console for people."
    )
    lease_seconds: int = Field(
        default=300,
        ge=1,
        description="How long a worker owns an event before the reaper hands it to another.",
    )
    housekeeping_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often each worker process gives back events whose lease ran out (the "
        "reaper) and runs its periodic jobs.",
    )
    purge_every_seconds: float = Field(
        default=21600.0,
        ge=60,
        description="How often housekeeping purges what tenants' retention_days and "
        "record_retention_days let go (one process does it per tenant and round).",
    )
    facts_refresh_hours: float = Field(
        default=24.0,
        ge=0,
        description="How often the housekeeping loop refreshes each tenant's report facts (its "
        "closed tickets and the hours spent on them, read from the PSA within the tenant's call "
        "limits); 0 turns the scheduled refresh off (psatriage report ... --refresh still works).",
    )
    facts_lookback_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="How far back a tenant's first scheduled refresh reads closed tickets; later "
        "refreshes read from the last one (with a week of overlap, for late changes).",
    )
    facts_time_per_run: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Most tickets whose time a scheduled refresh reads per tenant and run, so "
        "reports never take much of the PSA's call window from new tickets; the rest follow in "
        "later runs.",
    )
    max_attempts: int = Field(default=6, ge=1, description="Attempts before an event fails.")
    degraded_after: int = Field(
        default=5,
        ge=1,
        description="Failures in a row (PSA or model, events or polls) after which /readyz "
        "reports a tenant degraded, with the last reason.",
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive transient model failures (per tenant) that open the circuit: "
        "no calls for breaker_cooldown_seconds, events rescheduled.",
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit waits before one trial call."
    )
    retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First backoff delay; doubles each attempt, with jitter."
    )
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Longest backoff delay.")
    queue_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often an idle worker process looks at the events table without a "
        "wake-up: for retries that came due and wake-ups that were lost.",
    )
    max_body_bytes: int = Field(default=1_048_576, description="Largest webhook body accepted.")
    api_token: SecretStr | None = Field(
        default=None,
        description="When set, /api/* needs 'Authorization: Bearer <token>'.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="A Fernet key (32 url-safe base64 bytes) that encrypts what worker processes "
        "share through the queue's server or the file beside its SQLite file: PSA access tokens "
        "(HaloPSA, Kaseya BMS). Unset: `serve` on a SQLite queue makes one for the processes it "
        "starts, and every other process holds its own tokens. Generate one with "
        f"`{_MAKE_KEY}`; give every process the same key.",
    )

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        return _url_with_scheme(value.strip(), _DATABASE_SCHEMES, _DATABASE_FORMS)

    @field_validator("queue_url")
    @classmethod
    def _queue_scheme(cls, value: str) -> str:
        return _url_with_scheme(value.strip(), _QUEUE_SCHEMES, _QUEUE_FORMS)

    @field_validator("worker_processes", mode="before")
    @classmethod
    def _process_count(cls, value: object) -> int | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            count = int(str(value).strip())
        except ValueError:
            count = -1
        if not 0 <= count <= _MAX_WORKER_PROCESSES:
            raise ValueError(f"give a number from 0 to {_MAX_WORKER_PROCESSES}, or auto")
        return count

    @field_validator("api_token")
    @classmethod
    def _not_the_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse the example env file's ``change-me``: it would guard the API with a word
        anyone can read in the repository."""
        if value is not None and value.get_secret_value().strip() == PLACEHOLDER:
            raise ConfigError(
                f"PSATRIAGE_API_TOKEN is still the example's {PLACEHOLDER!r}; fix: set a random "
                "one, e.g. the output of: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A key Fernet accepts, else ``ConfigError``: raised as is (not as a pydantic error), so
        the message never carries the value it refused."""
        key = value.get_secret_value().strip() if value is not None else ""
        if not key:
            return None
        try:
            Fernet(key)
        except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors too
            raise ConfigError(
                "PSATRIAGE_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
                f"generate one with: {_MAKE_KEY}"
            ) from None
        return SecretStr(key)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'psatriage.db'}"

    @property
    def effective_queue_url(self) -> str:
        return self.queue_url or f"sqlite:///{self.data_dir / 'queue.db'}"

    @property
    def worker_process_count(self) -> int:
        """How many worker processes ``serve`` starts (``auto`` resolved on this machine)."""
        if self.worker_processes == "auto":
            return auto_worker_processes()
        return self.worker_processes

    @property
    def config_is_default(self) -> bool:
        return "config" not in self.model_fields_set


# the drivers this package installs: the standard library's sqlite3 and psycopg 3
_DATABASE_SCHEMES = frozenset(
    {"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"}
)
_DATABASE_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:5432/DB"
_QUEUE_SCHEMES = frozenset(
    {"sqlite", "redis", "rediss", "postgresql", "postgres", "postgresql+psycopg"}
)
_QUEUE_FORMS = "sqlite:///PATH, redis://HOST:6379/DB or postgresql://USER:PASSWORD@HOST:5432/DB"


def _url_with_scheme(url: str, schemes: frozenset[str], forms: str) -> str:
    """``url`` when its scheme (``backend`` or ``backend+driver``) is one of ``schemes``; empty
    is the default. The ``ValueError`` never quotes the URL: it may hold a password."""
    if not url:
        return url
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a URL; fix: use {forms}")
    if scheme.lower() not in schemes:
        raise ValueError(f"unsupported scheme {scheme!r}; fix: use {forms}")
    return url


def shared_server(queue_url: str) -> tuple[Literal["redis", "postgresql"], str] | None:
    """The server a shared queue lives on, as ``(kind, url)`` with a URL its client library
    takes (Redis as given; PostgreSQL as a plain libpq URL); None for SQLite (one process)."""
    scheme = queue_url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        return "redis", queue_url
    if scheme in {"postgresql", "postgres"}:
        return "postgresql", re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", queue_url)
    return None


def auto_worker_processes() -> int:
    """One worker process per core this process may run on, at most
    ``MAX_AUTO_WORKER_PROCESSES``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKER_PROCESSES, cores))


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment; keyword overrides win (tests build their own)."""
    return Settings(**overrides)  # type: ignore[arg-type]
