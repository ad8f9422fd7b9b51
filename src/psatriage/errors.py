"""The error tree. The class of an error decides what happens to the job that raised it.

::

    PsatriageError
    ├── ConfigError            bad settings or tenants file: refuse to start; says tenant, key, fix
    ├── WebhookRejected        sender not verified or body unusable: 4xx, nothing stored
    ├── TransientError         try again later (retry_after seconds when the far end said so)
    │   └── CallLimitReached   our own limit on PSA calls: wait a turn, spending no attempt
    ├── AuthFailed             credentials refused: park the event, flag the tenant
    ├── OverBudget             the tenant's model budget is spent: the event ends over_budget
    └── PermanentError         retrying cannot help: the event fails with this reason
        ├── CategoryRejected   the PSA refused the category we wrote (refresh the taxonomy once)
        ├── TimeUnavailable    the API user may not read time entries: reports go without hours
        ├── InvalidAnswer      the model answered something that is not a candidate
        └── NotFound           the PSA has no such record (a ticket deleted or merged away)

Adapters and classifiers each have one function that maps their HTTP or vendor errors into these
(``raise ... from exc``). Only the edges (CLI, web, worker) turn them into messages or status codes.
"""

from __future__ import annotations


class PsatriageError(Exception):
    """Base of every error psatriage raises on purpose.

    ``model_related`` is set by the pipeline on errors that come from the model, so the worker
    knows whether the tenant's ``report_errors`` note applies.
    """

    model_related: bool = False


class ConfigError(PsatriageError):
    """A setting or tenant entry is wrong. The message names the tenant, the key and the fix."""


class WebhookRejected(PsatriageError):
    """A webhook is refused. ``status`` is the HTTP status the web edge answers with."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class TransientError(PsatriageError):
    """A temporary failure (timeouts, 429, 5xx). ``retry_after`` is in seconds, if known."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CallLimitReached(TransientError):
    """Our own client-side limit on PSA calls is reached: nothing was sent, nothing failed.

    The job waits its turn (rescheduled after ``retry_after``) without spending an attempt.
    """


class OverBudget(PsatriageError):
    """The tenant's model budget (``budget.max_model_calls_per_day`` or ``max_cost_per_month``)
    is reached: no model is asked, and the event ends ``over_budget``."""


class AuthFailed(PsatriageError):
    """The PSA or the model refused our credentials (401/403)."""


class PermanentError(PsatriageError):
    """Retrying will not help; the event fails with this message as its reason."""


class CategoryRejected(PermanentError):
    """The PSA refused the category we tried to write (stale taxonomy or invalid combination)."""


class InvalidAnswer(PermanentError):
    """The model's answer is not one of the candidates, or not parseable."""


class NotFound(PermanentError):
    """The PSA has no such record (404, or its own way of saying so)."""


class TimeUnavailable(PermanentError):
    """The PSA will not show the API user the time spent on tickets. ``permission`` says what to
    grant (the role, security level or permission in the PSA's own words); reports still count
    tickets, and say that hours are unavailable and why."""

    def __init__(self, message: str, *, permission: str) -> None:
        super().__init__(message)
        self.permission = permission
