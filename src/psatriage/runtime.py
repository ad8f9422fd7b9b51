"""The wired-up service: settings, tenants, database, HTTP client, adapters and classifiers.

One ``Runtime`` per process, built by the CLI (or by a test) and handed to the web app and the
jobs. Adapters and classifiers are built once per tenant, on first use, and shared by threads.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError

from psatriage import budgets
from psatriage.breaker import CircuitBreaker
from psatriage.budgets import Meter
from psatriage.classifiers import classifiers
from psatriage.classifiers.base import Classifier
from psatriage.config import AppConfig, Tenant, load_config
from psatriage.health import TenantHealth, degraded_in_ledger
from psatriage.http import make_client
from psatriage.learning.fields import FieldModels
from psatriage.learning.similar import SimilarExamples
from psatriage.logging import register_secrets
from psatriage.pipeline import Deps
from psatriage.psa import adapters
from psatriage.psa.base import PSAAdapter
from psatriage.psa.client import PSAClient
from psatriage.queue import Queue
from psatriage.reviews import Desk
from psatriage.settings import Settings
from psatriage.shared import limits, tokens
from psatriage.store import db
from psatriage.store.decisions import Decisions
from psatriage.store.ledger import Ledger
from psatriage.store.outcomes import Outcomes, SweepMarks
from psatriage.store.polls import PollMarks
from psatriage.store.reviews import Reviews
from psatriage.store.taxonomies import StoredTaxonomies
from psatriage.store.tenant_state import TenantStates
from psatriage.store.usage import Usage
from psatriage.store.users import Audit
from psatriage.taxonomy_cache import TaxonomyCache


class Runtime:
    def __init__(
        self,
        settings: Settings,
        config: AppConfig | None = None,
        *,
        http: httpx.Client | None = None,
        migrate: bool = True,
    ) -> None:
        self.settings = settings
        self.config = config or load_config(settings.config, missing_ok=settings.config_is_default)
        register_secrets(self.config.secret_values())
        if settings.secret_key is not None:
            register_secrets([settings.secret_key.get_secret_value()])
        self.engine = db.make_engine(settings.effective_database_url)
        if migrate:
            db.upgrade(self.engine)
        self.sessions = db.make_sessionmaker(self.engine)
        self.ledger = Ledger(self.engine, self.sessions)
        self._windows = limits.limits_for(settings.effective_queue_url)
        limits.share_limits(self._windows)  # PSA call limits shared by every worker process
        self._tokens = (  # and access tokens, encrypted, where a tenant's PSA holds one
            tokens.tokens_for(settings.effective_queue_url, settings.secret_key)
            if any(adapters()[t.psa].needs_token_cache for t in self.config.tenants.values())
            else None
        )
        tokens.share_tokens(self._tokens)
        self.decisions = Decisions(self.sessions)
        self.reviews = Reviews(self.sessions)
        self.outcomes = Outcomes(self.sessions)
        self.sweeps = SweepMarks(self.engine, self.sessions)
        self.usage = Usage(self.engine)
        self.polls = PollMarks(self.engine, self.sessions)
        self.tenant_states = TenantStates(self.engine)
        self.taxonomies = TaxonomyCache(StoredTaxonomies(self.sessions))
        self.similar_examples = SimilarExamples(self.sessions)
        self.field_models = FieldModels(self.sessions)
        self.http = http or make_client(max_connections=max(32, settings.workers * 2))
        self._adapters: dict[str, PSAAdapter[Any]] = {}
        self._classifiers: dict[str, Classifier[Any]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._queue: Queue | None = None
        self.tenant_problems: dict[str, str] = {}
        self.health = TenantHealth(settings.degraded_after)

    def __repr__(self) -> str:
        return f"Runtime(tenants={sorted(self.config.tenants)})"

    @property
    def queue(self) -> Queue:
        """The wake-up channel to the workers, opened on first use (a process that only reads
        never opens it)."""
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = Queue(
                        self.settings.effective_queue_url,
                        poll_seconds=self.settings.queue_poll_seconds,
                    )
        return self._queue

    def tenant(self, name: str) -> Tenant:
        return self.config.tenant(name)

    def adapter(self, name: str) -> PSAAdapter[Any]:
        with self._lock:
            adapter = self._adapters.get(name)
            if adapter is None:
                tenant = self.config.tenant(name)
                adapter = adapters()[tenant.psa](tenant.name, tenant.connection, self.http)
                client = getattr(adapter, "client", None)
                if isinstance(client, PSAClient) and tenant.psa_timeout_seconds is not None:
                    client.timeout = tenant.psa_timeout_seconds
                self._adapters[name] = adapter
            return adapter

    def classifier(self, name: str) -> Classifier[Any]:
        with self._lock:
            classifier = self._classifiers.get(name)
            if classifier is None:
                tenant = self.config.tenant(name)
                classifier = classifiers()[tenant.classifier_kind](tenant.name, tenant.classifier)
                classifier.use_database(self.sessions)
                self._classifiers[name] = classifier
            return classifier

    def deps(self, name: str) -> Deps:
        with self._lock:
            breaker = self._breakers.setdefault(
                name,
                CircuitBreaker(
                    threshold=self.settings.breaker_failures,
                    cooldown=self.settings.breaker_cooldown_seconds,
                ),
            )
        return Deps(
            breaker=breaker,
            tenant=self.config.tenant(name),
            adapter=self.adapter(name),
            classifier=self.classifier(name),
            decisions=self.decisions,
            taxonomies=self.taxonomies,
            examples=self.similar_examples,
            usage=self.usage,
            field_models=self.field_models,
        )

    def review_desk(self) -> Desk:
        """What the review queue's actions need (``psatriage.reviews.act``)."""
        return Desk(
            reviews=self.reviews,
            decisions=self.decisions,
            audit=Audit(self.sessions),
            taxonomies=self.taxonomies,
            tenant=self.tenant,
            adapter=self.adapter,
            sessions=self.sessions,
            outcomes=self.outcomes,
        )

    def problems(self) -> dict[str, list[str]]:
        """Per tenant, what an operator must look at: refused credentials, adapter problems,
        repeated failures (``degraded``)."""
        with self._lock:
            built = dict(self._adapters)
        degraded = self.degraded()
        found: dict[str, list[str]] = {}
        for name in sorted(set(built) | set(self.tenant_problems) | set(degraded)):
            listed = [self.tenant_problems[name]] if name in self.tenant_problems else []
            listed += built[name].problems() if name in built else []
            listed += [f"degraded: {degraded[name]}"] if name in degraded else []
            if listed:
                found[name] = listed
        return found

    def degraded(self) -> dict[str, str]:
        """Per tenant with repeated PSA or model failures: why (``psatriage.health``)."""
        try:
            found = degraded_in_ledger(
                self.sessions, sorted(self.config.tenants), self.settings.degraded_after
            )
        except SQLAlchemyError:  # the database is away: /readyz says so by itself
            found = {}
        for name, reason in self.health.degraded().items():
            found.setdefault(name, reason)
        return found

    def breakers_open(self) -> dict[str, bool]:
        """Per tenant whose model breaker this process has built: whether it is open."""
        with self._lock:
            return {name: breaker.open for name, breaker in self._breakers.items()}

    def budgets(self) -> dict[str, Meter]:
        """Every budgeted tenant's meter (what ``/readyz`` and ``/metrics`` show)."""
        return budgets.meters(self.config.tenants, self.usage)

    def flag_tenant(self, name: str, problem: str) -> None:
        """Remember a tenant-wide problem (credentials refused) for ``/readyz``."""
        self.tenant_problems[name] = problem

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
        for classifier in self._classifiers.values():
            classifier.close()
        if self._windows is not None:
            limits.share_limits(None)
            self._windows.close()
        if self._tokens is not None:
            tokens.share_tokens(None)
            self._tokens.close()
        self.http.close()
        self.engine.dispose()
