"""Prometheus metrics (``/metrics``): events by outcome, latencies, tokens and cost, and the
accuracy measured from outcomes over the last 30 days (``psatriage.accuracy.refresh_gauges``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from psatriage.domain import ModelCall

WEBHOOKS = Counter(
    "psatriage_webhooks_total", "Webhook deliveries by tenant and result.", ["tenant", "result"]
)
EVENTS = Counter(
    "psatriage_events_total", "Events finished, by tenant and outcome.", ["tenant", "outcome"]
)
PROCESSING_SECONDS = Histogram(
    "psatriage_event_processing_seconds",
    "Time to process one event in a worker (one attempt).",
    ["tenant"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
END_TO_END_SECONDS = Histogram(
    "psatriage_event_end_to_end_seconds",
    "From webhook received to event finished.",
    ["tenant"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
WEBHOOK_SECONDS = Histogram(
    "psatriage_webhook_seconds",
    "Time to acknowledge a webhook.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
)
MODEL_SECONDS = Histogram(
    "psatriage_model_call_seconds",
    "Latency of one model call.",
    ["tenant", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
MODEL_TOKENS = Counter(
    "psatriage_model_tokens_total", "Tokens sent and received.", ["tenant", "model", "direction"]
)
MODEL_COST = Counter(
    "psatriage_model_cost_usd_total", "Estimated model cost in USD.", ["tenant", "model"]
)
CALLS_SAVED = Counter(
    "psatriage_model_calls_saved_total",
    "Model calls saved by reusing a decision, by tenant and why (storm: an alert storm).",
    ["tenant", "reason"],
)
MODEL_ERRORS = Counter(
    "psatriage_model_errors_total", "Model calls that failed.", ["tenant", "model"]
)

ACCURACY = Gauge(
    "psatriage_accuracy",
    "Share of known outcomes of the last 30 days whose final category is the model's choice, "
    "by tenant and confidence band (band 'all': every band).",
    ["tenant", "band"],
)
OUTCOMES = Gauge(
    "psatriage_outcomes",
    "Outcomes of the decisions of the last 30 days, by tenant and state.",
    ["tenant", "state"],
)


def observe_model_call(call: ModelCall) -> None:
    MODEL_SECONDS.labels(call.tenant, call.model).observe(call.latency_ms / 1000)
    MODEL_TOKENS.labels(call.tenant, call.model, "in").inc(call.tokens_in)
    MODEL_TOKENS.labels(call.tenant, call.model, "out").inc(call.tokens_out)
    MODEL_COST.labels(call.tenant, call.model).inc(call.cost_usd)
    if call.error:
        MODEL_ERRORS.labels(call.tenant, call.model).inc()


# -- failures and the state of the service (issue: observability) -----------------------------

POLL_FAILURES = Counter(
    "psatriage_poll_failures_total", "Polls of a tenant's PSA that failed.", ["tenant"]
)
PSA_CALL_ERRORS = Counter(
    "psatriage_psa_call_errors_total",
    "Calls to a PSA that failed, by tenant, endpoint (e.g. 'GET service/tickets/{id}') and kind "
    "(auth, rate_limited, transient, rejected, permanent).",
    ["tenant", "endpoint", "kind"],
)


def psa_call_failed(tenant: str, endpoint: str, error: Exception) -> None:
    PSA_CALL_ERRORS.labels(tenant, endpoint, _kind(error)).inc()


def _kind(error: Exception) -> str:
    names = [cls.__name__ for cls in type(error).__mro__]
    for name, kind in (
        ("AuthFailed", "auth"),
        ("RateLimited", "rate_limited"),
        ("TransientError", "transient"),
        ("CategoryRejected", "rejected"),
    ):
        if name in names:
            return kind
    return "permanent"
