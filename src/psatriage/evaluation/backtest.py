"""A backtest: the tenant's closed tickets through the pipeline's own classification, dry.

Each closed, categorized ticket of the period (``PSAAdapter.list_labeled_tickets``) is classified
as the pipeline would classify it when it was new — the company's effective settings, redaction,
the policy's candidates, the shortlist, the prompt and the classifier (``pipeline.classify``) —
with its final category hidden; nothing is written to the PSA or to the decisions table. Each
ticket's result (or its failure, by kind) is checkpointed in ``store.backtests`` as it comes, so
an interrupted run resumes where it stopped: the same command finds the unfinished run by its key
(the tenant's settings and the parameters) and classifies only what is left. Tickets that failed
for a passing reason (a server unavailable, credentials refused) are tried again by the same
command, even after the run finished; a finished run without such failures is history, and the
same command measures again from the start (``fresh`` starts over in any case).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from psatriage import fields, pipeline, policy
from psatriage.config import Tenant
from psatriage.config.tenant import Effective
from psatriage.domain import (
    PATH_SEPARATOR,
    Category,
    Chosen,
    Classification,
    Facet,
    FieldDecision,
    LabeledTicket,
    LevelValue,
    Taxonomy,
    Ticket,
)
from psatriage.errors import ConfigError, PsatriageError
from psatriage.evaluation import backtest_report
from psatriage.evaluation.fields import scored as scored_field
from psatriage.evaluation.measures import Prediction
from psatriage.evaluation.runs import STOPPING_KIND, failure_kind, score
from psatriage.fields import noise
from psatriage.fields.decide import NOISE
from psatriage.learning.fields import noise_kind
from psatriage.pipeline.deciding import route_first, with_learned_fields
from psatriage.store.activity import Activity
from psatriage.store.backtests import Backtests
from psatriage.store.tables import BacktestRunRow, utcnow

_PERIOD = re.compile(r"^(\d+)\s*([dw])$")
PSA_PREFIX = "PSA "
STOPPING_KINDS = frozenset({STOPPING_KIND, PSA_PREFIX + STOPPING_KIND})
RETRIED_KINDS = STOPPING_KINDS | {"server unavailable", PSA_PREFIX + "server unavailable"}

Progress = Callable[[int, int], None]  # (tickets done, tickets in the run)


class NoHistory(ConfigError):
    """The PSA has no closed, categorized tickets in the period."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: a period back from now (``90d``, ``12w``) or an ISO date; naive UTC."""
    now = now or utcnow()
    value = text.strip().lower()
    period = _PERIOD.match(value)
    if period:
        days = int(period.group(1)) * (7 if period.group(2) == "w" else 1)
        if days == 0:
            raise ConfigError(f"--since {text!r} is an empty period; give one such as 90d")
        return now - timedelta(days=days)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a period such as 90d or 12w nor an ISO date such as "
            "2026-09-01"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment > now:
        raise ConfigError(
            f"--since {text!r} is in the future; give a past date or a period such as 90d"
        )
    return moment


@dataclass(frozen=True)
class Params:
    """What the command was asked: the period as written, the ticket limit, the engine (empty:
    the tenant's own classifier)."""

    since: str
    limit: int
    engine: str = ""


def run_key(tenant: Tenant, params: Params) -> str:
    """The key that finds an unfinished run again: the parameters and every tenant setting that
    changes how a ticket is classified (secrets are masked by their models)."""
    settings = {
        "params": [params.since, params.limit, params.engine],
        "classifier": [tenant.classifier_kind, tenant.classifier.model_dump(mode="json")],
        "policy": tenant.policy.model_dump(mode="json"),
        "companies": {k: v.model_dump(mode="json") for k, v in tenant.companies.items()},
        "instructions": tenant.instructions,
        "prompt": tenant.prompt.hash,
        "taxonomy": tenant.taxonomy.model_dump(mode="json"),
        "fields": tenant.fields.model_dump(mode="json"),
        "redaction": [
            tenant.redactor.enabled,
            {name: p.pattern for name, p in tenant.redactor.patterns.items()},
        ],
    }
    text = json.dumps({"tenant": tenant.name, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Outcome:
    """How a call ended: the run, how many tickets an earlier call had done, every result of
    the tickets read, and the report (``None`` when the run ``stopped`` early)."""

    run_id: int
    since: datetime
    resumed: int
    results: list[dict[str, Any]]
    report: dict[str, Any] | None
    stopped: str | None = None


@dataclass(frozen=True, slots=True)
class _Scope:
    id: str
    name: str
    offered: dict[str, str]  # key -> label of the categories the tenant's policy offers


def backtest(
    deps: pipeline.Deps,
    store: Backtests,
    params: Params,
    *,
    activity: Activity | None = None,
    target: float = backtest_report.DEFAULT_TARGET,
    suggest_target: float = backtest_report.DEFAULT_SUGGEST_TARGET,
    fresh: bool = False,
    concurrency: int = 1,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Run (or resume) the backtest of ``deps.tenant``; see the module docstring."""
    run, history = _open(deps, store, params, fresh=fresh, now=now)
    context = run.context
    if "volume" not in context:
        volume = measure_volume(deps, activity, run.since, len(history), now)
        context = store.update_context(run.id, volume=volume)
    done = {
        ticket: result
        for ticket, result in store.results(run.id).items()
        if (result.get("failure") or {}).get("kind") not in RETRIED_KINDS
    }
    wanted = [item.ticket.id for item in history]
    resumed = count = sum(ticket in done for ticket in wanted)

    def advance(step: int = 1) -> None:
        nonlocal count
        count += step
        if progress is not None:
            progress(count, len(wanted))

    advance(0)
    todo = [item for item in history if item.ticket.id not in done]
    scopes: dict[str, Any] = dict(context.get("scopes", {}))
    stopped = _classify(deps, store, run.id, todo, done, scopes, concurrency, advance)
    results = [done[ticket] for ticket in wanted if ticket in done]
    if stopped is not None:
        return Outcome(run.id, run.since, resumed, results, None, stopped)
    offered = {k: v for scope in scopes.values() for k, v in scope["offered"].items()}
    report = backtest_report.summarize(
        results, offered, context["volume"], target=target, suggest_target=suggest_target
    )
    report["run"] = {
        "id": run.id,
        "tenant": deps.tenant.name,
        "psa": deps.adapter.kind,
        "since": run.since.isoformat(timespec="seconds"),
        "period": params.since,
        "limit": params.limit,
        "engine": params.engine or deps.tenant.classifier_kind,
    }
    store.finish(run.id, report)
    return Outcome(run.id, run.since, resumed, results, report)


def _open(
    deps: pipeline.Deps, store: Backtests, params: Params, *, fresh: bool, now: datetime | None
) -> tuple[BacktestRunRow, list[LabeledTicket]]:
    """The run to continue (or a new one) and the closed tickets of its period."""
    tenant, adapter = deps.tenant, deps.adapter
    since = parse_since(params.since, now)
    if not adapter.can_list_history():
        raise ConfigError(
            f"tenant {tenant.name!r}: the {adapter.kind} adapter cannot read closed tickets"
        )
    key = run_key(tenant, params)
    run = store.latest(tenant.name, key)
    if run is not None and run.finished_at is not None and (fresh or not to_retry(run.report)):
        run = None  # finished, nothing to try again: history; the same command measures anew
    if run is not None and fresh:
        store.discard(run.id)
        run = None
    if run is not None:
        since = run.since  # a resumed run keeps its period, even a day later
    history = adapter.list_labeled_tickets(since, params.limit)
    if not history:
        raise NoHistory(
            f"tenant {tenant.name!r}: {adapter.kind} has no closed, categorized tickets created "
            f"since {since:%Y-%m-%d}; give an earlier --since"
        )
    if run is None:
        recorded = {"since": params.since, "limit": params.limit, "engine": params.engine}
        run = store.start(tenant.name, key, recorded, since)
    return run, history


def to_retry(report: Mapping[str, Any] | None) -> int:
    """How many tickets of a run failed for a passing reason (the same command tries again)."""
    failures: Mapping[str, int] = (report or {}).get("failures", {})
    return sum(count for kind, count in failures.items() if kind in RETRIED_KINDS)


def _classify(
    deps: pipeline.Deps,
    store: Backtests,
    run_id: int,
    todo: list[LabeledTicket],
    done: dict[str, dict[str, Any]],
    scopes: dict[str, Any],
    concurrency: int,
    advance: Callable[[], None],
) -> str | None:
    """Classify ``todo``, at most ``concurrency`` tickets at a time, checkpointing each result
    into the store and ``done``; returns why it stopped early (refused credentials), else None.
    On an interrupt, the tickets in flight finish and are checkpointed too."""

    def keep(result: dict[str, Any], scope: _Scope | None) -> str | None:
        store.save_result(run_id, result["ticket"], result)
        done[result["ticket"]] = result
        if scope is not None and scope.id not in scopes:
            scopes[scope.id] = {"name": scope.name, "offered": scope.offered}
            store.update_context(run_id, scopes=scopes)
        failure = result.get("failure") or {}
        if failure.get("kind") in STOPPING_KINDS:
            return f"stopped after ticket {result['ticket']}: {failure['message']}"
        return None

    # every answer, as its thread finishes it: an interrupt can land between a ticket's
    # submission and its future's bookkeeping, and that ticket is kept all the same
    answered: list[tuple[dict[str, Any], _Scope | None]] = []

    def evaluate(item: LabeledTicket) -> tuple[dict[str, Any], _Scope | None]:
        answer = _evaluate(deps, item)
        answered.append(answer)
        return answer

    waiting = iter(todo)
    running: set[Future[tuple[dict[str, Any], _Scope | None]]] = set()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            while True:
                for item in islice(waiting, concurrency - len(running)):
                    running.add(pool.submit(evaluate, item))
                if not running:
                    return None
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.discard(future)
                    stopped = keep(*future.result())
                    if stopped is not None:
                        return stopped
                    advance()
    finally:  # stopped or interrupted: what was in flight has finished; keep what it cost
        for result, scope in answered:
            if result["ticket"] not in done:
                keep(result, scope)


def measure_volume(
    deps: pipeline.Deps,
    activity: Activity | None,
    since: datetime,
    read: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """How many tickets the tenant gets in the period: counted in the PSA where the adapter can
    list new tickets, else from the ledger, else the closed tickets read (a lower bound)."""
    adapter = deps.adapter
    days = ((now or utcnow()) - since).total_seconds() / 86400
    note = ""
    if adapter.can_poll():
        try:
            created = len(adapter.list_new_tickets(since))
            return {
                "tickets": created,
                "days": days,
                "source": f"tickets created in {adapter.kind}",
            }
        except PsatriageError as exc:
            note = f" ({adapter.kind} could not count them: {exc})"
    received = activity.tickets_received(deps.tenant.name, since) if activity else 0
    if received:
        return {"tickets": received, "days": days, "source": "tickets received (ledger)" + note}
    return {"tickets": read, "days": days, "source": "closed tickets read, a lower bound" + note}


def _evaluate(deps: pipeline.Deps, item: LabeledTicket) -> tuple[dict[str, Any], _Scope | None]:
    """One closed ticket, classified as if it were new; its result and the scope it belongs to."""
    tenant = deps.tenant
    ticket = replace(item.ticket, current=())  # the final category is the answer, not a hint
    effective = tenant.effective(ticket.company_id, ticket.company_name)
    result: dict[str, Any] = {
        "ticket": ticket.id,
        "company": ticket.company_name or ticket.company_id or "",
        "scope": ticket.scope_name or ticket.scope,
        "truth": _truth(item, None, ()),
        "predicted": None,
        "confidence": None,
        "engine": "",
        "latency_ms": 0.0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "failure": None,
    }
    try:
        taxonomy = deps.taxonomies.get(
            tenant.name, deps.adapter, ticket, ttl_seconds=tenant.taxonomy.cache_seconds
        )
    except PsatriageError as exc:
        result["failure"] = {"kind": PSA_PREFIX + failure_kind(exc), "message": str(exc)}
        return result, None
    offered = policy.candidates(tenant.policy, taxonomy)
    scope = _Scope(taxonomy.scope, taxonomy.scope_name, {c.key: c.label for c in offered})
    candidates = policy.candidates(effective.policy, taxonomy)
    result["truth"] = _truth(item, taxonomy, tuple(c.key for c in candidates))
    if not candidates:
        message = f"no categories to choose from on {taxonomy.scope_name or taxonomy.scope}"
        result["failure"] = {"kind": "no candidates", "message": message}
        return result, scope
    chosen: list[Chosen] = []
    try:
        options, scored_fields = _field_options(deps, ticket, taxonomy, effective, item)
    except PsatriageError as exc:
        result["failure"] = {"kind": PSA_PREFIX + failure_kind(exc), "message": str(exc)}
        return result, scope
    decided: list[FieldDecision] = []

    def classify(record: Callable[..., None]) -> Classification:
        asked = dict(options)
        if "routing" in asked and deps.adapter.routing_sets_scope:  # asked first, as the service
            decided.extend(
                route_first(deps, ticket, effective, asked.pop("routing"), 0, record=record)
            )
        classification, picked, _ = pipeline.classify(
            deps,
            ticket,
            taxonomy,
            effective,
            record=record,
            fields=fields.specs(effective.fields, asked),
        )
        chosen.append(picked)
        classification = with_learned_fields(deps, ticket, classification, effective, asked)
        ruled = noise.by_rules(effective.fields, ticket)  # the service's rule comes first
        if ruled is not None:
            decided.append(noise.ruled(*ruled))
        decided.extend(
            fields.decide(
                effective.fields, classification, asked, effective.policy, title=ticket.title
            )
        )
        return classification

    scored = score(ticket.id, result["truth"]["key"], classify)
    result |= {
        "latency_ms": scored.latency_ms,
        "tokens_in": scored.tokens_in,
        "tokens_out": scored.tokens_out,
        "cost_usd": scored.cost_usd,
    }
    if isinstance(scored, Prediction):
        leaf = chosen[0].category
        result |= {
            "predicted": {"key": leaf.key, "label": leaf.label, "path": _path(leaf.path)},
            "confidence": scored.confidence,
            "engine": scored.engine,
        }
        if scored_fields:
            result["fields"] = _scored_fields(scored_fields, decided)
    else:
        result["failure"] = {"kind": scored.kind, "message": scored.message}
    return result, scope


def _field_options(
    deps: pipeline.Deps,
    ticket: Ticket,
    taxonomy: Taxonomy,
    effective: Effective,
    item: LabeledTicket,
) -> tuple[dict[str, Facet], dict[str, LevelValue]]:
    """The live values of the company's enabled stored fields (asked as the service asks them),
    and the fields to score: those the ticket closed with, among them, and its noise kind where
    a noise action sets a category (a ticket left in the spam category was spam)."""
    options = pipeline.field_options(deps, ticket, effective.fields)
    truth = {name: value for name, value in item.fields.items() if name in options}
    if "noise" in effective.fields.active():  # told by the category a noise action sets
        leaf = taxonomy.find_by_ids(item.path) or taxonomy.get(item.key)
        kind = noise_kind(effective.fields, leaf or Category(item.key, item.path))
        if kind is not None:
            name = next((v.name for v in NOISE if v.id == kind), kind)
            truth["noise"] = LevelValue("noise", kind, name)
    return options, truth


def _scored_fields(
    truth: Mapping[str, LevelValue], decided: list[FieldDecision]
) -> dict[str, dict[str, Any]]:
    """Each field the ticket closed with, and what the backtest decided for it."""
    by_name: dict[str, FieldDecision] = {}
    for one in decided:
        by_name.setdefault(one.name, one)  # a rule's noise before the model's
    out = {}
    for name, value in truth.items():
        found = by_name.get(name)
        predicted = None if found is None else (found.value_id, found.value)
        out[name] = scored_field(
            value.id, value.name, predicted, None if found is None else found.confidence
        )
    return out


def _truth(
    item: LabeledTicket, taxonomy: Taxonomy | None, candidates: tuple[str, ...]
) -> dict[str, Any]:
    """The final category: the taxonomy's leaf where it is one, with whether the model was
    offered it and whether it is only the PSA's placeholder."""
    leaf = None
    if taxonomy is not None:
        leaf = taxonomy.find_by_ids(item.path) or taxonomy.get(item.key)
    path = leaf.path if leaf is not None else item.path
    defaults = taxonomy.defaults if taxonomy is not None else frozenset()
    return {
        "key": leaf.key if leaf is not None else item.key,
        "label": PATH_SEPARATOR.join(v.name for v in path),
        "path": _path(path),
        "offered": leaf is not None and leaf.key in candidates,
        "placeholder": bool(path) and all((v.level, v.id) in defaults for v in path),
    }


def _path(path: tuple[Any, ...]) -> list[list[str]]:
    return [[v.level, v.id, v.name] for v in path]
