"""The HTTP client every PSA adapter builds on: one way to send, one error ladder, short retries.

::

    PSAClient.call(method, path, what=...)      one API call, retried briefly on 429
      └─ exchange(...)        the PSA's own: URL, credentials, re-auth or re-discovery once
           └─ send(...)       under the tenant's CallLimits; a transport failure is transient
      └─ raise_for(...)       non-2xx into the error tree, through the PSA's hooks

A vendor subclass sets ``psa`` (its name in messages) and ``principal`` (whose credentials a
401/403 refused), implements ``exchange``, and reads its error bodies in ``detail``; a PSA with a
quirk of its own (Autotask's 500 that is not a server fault, Kaseya BMS's envelope) overrides
``quirk`` or ``failure``. The ladder itself:

=========================  ===================================================================
401, 403                   ``AuthFailed``
429                        ``RateLimited`` (a ``TransientError``), with the server's Retry-After
5xx                        ``TransientError``, with the server's Retry-After
404                        ``NotFound`` ("... not found")
3xx                        ``PermanentError`` (redirects are never followed: credentials stay)
``rejected_statuses``      the caller's ``rejected`` class (``CategoryRejected`` for writes)
any other                  ``PermanentError``
=========================  ===================================================================

Inside one call a 429 is retried ``rate_limit_retries`` times with a short jittered backoff
(stamina), honouring a Retry-After of at most ``max_rate_limit_wait_seconds``; a longer wait, a
5xx or a full client-side window (``CallLimitReached``) is left to the job scheduler, which
reschedules the ticket instead of holding a worker. A write that got no answer (a timeout, a
connection dropped after it was sent) may still be applied by a server that held it: its
``TransientError`` asks the scheduler to wait as long as the request waited before the ticket is
read again, so the next try sees the write instead of sending it twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import httpx
import stamina

from psatriage import metrics
from psatriage.errors import (
    AuthFailed,
    CallLimitReached,
    NotFound,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.http import READ_TIMEOUT_SECONDS, retry_after
from psatriage.psa.base import AdapterConfig
from psatriage.shared.limits import CallLimits

Params = Mapping[str, str | int]
Form = Mapping[str, str]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# transport failures before the request reached the server: nothing can have been applied
_NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


class RateLimited(TransientError):
    """The PSA answered 429. Retried briefly inside the call, then left to the job scheduler."""


@dataclass(frozen=True)
class Failure:
    """A failed answer as the ladder reads it: its status (HTTP, or a code the PSA put in the
    body), what was asked for, the PSA's own words (``": message"`` or ``""``) and the class a
    rejected write becomes."""

    status: int
    response: httpx.Response
    what: str
    detail: str
    rejected: type[PermanentError]


class PSAClient(ABC):
    """Calls to one tenant's PSA, shared by the adapter's worker threads."""

    psa: ClassVar[str]  # "ConnectWise": how messages name the PSA
    principal: ClassVar[str]  # "the API member": whose credentials a 401/403 refused
    rejected_statuses: ClassVar[Collection[int]] = frozenset({400})
    default_retry_after: ClassVar[float | None] = None  # for a 429 without Retry-After

    def __init__(
        self,
        http: httpx.Client,
        limits: CallLimits,
        config: AdapterConfig,
        *,
        scrub: Iterable[str] = (),
    ) -> None:
        self.http = http
        self.timeout: float | None = None  # seconds per request; None: the HTTP client's (30 s)
        self.limits = limits
        self._scrub = tuple(s for s in scrub if s)
        self._max_wait = config.max_rate_limit_wait_seconds
        self._retrying = stamina.RetryingCaller(
            attempts=config.rate_limit_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=config.max_rate_limit_wait_seconds,
            wait_jitter=0.5,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- calls ------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        json_body: object = None,
        data: Form | None = None,
        rejected: type[PermanentError] = PermanentError,
    ) -> httpx.Response:
        """One API call, its answer checked by ``raise_for``; a 429 is retried briefly. A
        failure is counted in ``psatriage_psa_call_errors_total`` by tenant and endpoint."""
        try:
            return self._retrying(
                self._rate_limited,
                self._call_once,
                method,
                path,
                what,
                params,
                json_body,
                data,
                rejected,
            )
        except CallLimitReached:
            raise  # our own limit: nothing was sent
        except PsatriageError as exc:
            tenant = self.limits.scope.partition(":")[2] or self.limits.scope
            metrics.psa_call_failed(tenant, endpoint_of(method, path), exc)
            raise

    @abstractmethod
    def exchange(
        self,
        method: str,
        path: str,
        *,
        params: Params | None,
        json_body: object,
        data: Form | None,
    ) -> httpx.Response:
        """Send one API request with the PSA's credentials, through ``send``; where the PSA asks
        for it (an expired token, a moved zone or codebase), renew or rediscover once and send
        again. The answer is returned unchecked."""

    def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        json_body: object = None,
        data: Form | None = None,
    ) -> httpx.Response:
        """One request, counted against the tenant's limits as ``endpoint``: it waits briefly for
        a free slot, and a full window raises ``CallLimitReached`` before anything is sent."""
        with self.limits.call(endpoint):
            return self.send_unlimited(
                method, url, headers=headers, params=params, json_body=json_body, data=data
            )

    def send_unlimited(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        json_body: object = None,
        data: Form | None = None,
    ) -> httpx.Response:
        """One request outside the limits, for the few that must never wait on them (a webhook's
        signing key) or that do not go to the tenant's API (a zone lookup)."""
        try:
            return self.http.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                follow_redirects=False,
                timeout=httpx.USE_CLIENT_DEFAULT if self.timeout is None else self.timeout,
            )
        except httpx.TransportError as exc:
            message = f"{self.psa} did not answer {method} {httpx.URL(url).path}: "
            message += type(exc).__name__
            settle = self._settle_seconds(method, exc)
            if settle is None:
                raise TransientError(message) from exc
            raise TransientError(
                f"{message} (the write may still be applied; tried again in {settle:g} s at the "
                "earliest)",
                retry_after=settle,
            ) from exc

    def _settle_seconds(self, method: str, exc: httpx.TransportError) -> float | None:
        """How long to wait before the ticket is read again after a write that got no answer: a
        server that holds a request may apply it after we gave up, and a ticket read before that
        would not show it (the write would be sent twice). As long as we waited for the answer,
        so the next try comes at least two timeouts after the write was sent. None for a read,
        or for a failure before anything was sent."""
        if method.upper() in _READS or isinstance(exc, _NOTHING_SENT):
            return None
        if self.timeout is not None:
            return self.timeout
        return self.http.timeout.read or READ_TIMEOUT_SECONDS

    # -- the error ladder -------------------------------------------------------------------------

    def raise_for(
        self,
        response: httpx.Response,
        what: str,
        *,
        rejected: type[PermanentError] = PermanentError,
    ) -> None:
        """Turn a failed answer into the error tree (see the module docstring)."""
        failure = self.failure(response, what, rejected)
        if failure is not None:
            self.fail(failure)

    def failure(
        self, response: httpx.Response, what: str, rejected: type[PermanentError]
    ) -> Failure | None:
        """What went wrong with an answer, if anything: by default a status of 300 or more (a
        PSA that reports failures inside an HTTP 200 reads its body here)."""
        if response.status_code < 300:
            return None
        detail = self.scrubbed(self.detail(response))
        return Failure(response.status_code, response, what, detail, rejected)

    def fail(self, failure: Failure) -> NoReturn:
        """Raise what ``failure.status`` means: the PSA's ``quirk``, else the ladder's."""
        raise self.quirk(failure) or self._ladder(failure)

    def _ladder(self, failure: Failure) -> PsatriageError:
        status, what, detail = failure.status, failure.what, failure.detail
        wait = retry_after(failure.response.headers)
        if status in (401, 403):
            return AuthFailed(f"{self.psa} refused {self.principal} ({status}) for {what}{detail}")
        if status == 429:
            wait = self.default_retry_after if wait is None else wait
            return RateLimited(f"{self.psa} answered 429 for {what}{detail}", retry_after=wait)
        if status >= 500:
            return TransientError(
                f"{self.psa} answered {status} for {what}{detail}", retry_after=wait
            )
        if status == 404:
            return NotFound(f"{what} not found{detail}")
        if status < 400:
            return PermanentError(f"{self.psa} redirected the request for {what} ({status})")
        if status in self.rejected_statuses:
            return failure.rejected(f"{self.psa} rejected {what} ({status}){detail}")
        return PermanentError(f"{self.psa} answered {status} for {what}{detail}")

    def quirk(self, failure: Failure) -> PsatriageError | None:
        """A PSA's exception to the ladder (e.g. a 500 that means "not found"), or None."""
        return None

    def detail(self, response: httpx.Response) -> str:
        """': what the PSA said went wrong', from its error body, or ''."""
        return ""

    def scrubbed(self, text: str) -> str:
        """``text`` with the tenant's secrets replaced by ``***`` (answers may echo them)."""
        for secret in self._scrub:
            text = text.replace(secret, "***")
        return text

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """``call`` and its decoded answer."""
        return self.json_of(self.call(method, path, what=what, **kwargs), what)

    def json_of(self, response: httpx.Response, what: str) -> Any:
        """The decoded answer; ``PermanentError`` when it is not JSON."""
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentError(
                f"{self.psa} answered {what} with something other than JSON"
            ) from exc

    # -- internals --------------------------------------------------------------------------------

    def _call_once(
        self,
        method: str,
        path: str,
        what: str,
        params: Params | None,
        json_body: object,
        data: Form | None,
        rejected: type[PermanentError],
    ) -> httpx.Response:
        response = self.exchange(method, path, params=params, json_body=json_body, data=data)
        self.raise_for(response, what, rejected=rejected)
        return response

    def _rate_limited(self, exc: Exception) -> bool | float:
        """stamina's hook: only 429s are retried here, and only short waits."""
        if not isinstance(exc, RateLimited):
            return False
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= self._max_wait else False


def endpoint_of(method: str, path: str) -> str:
    """What a call counts against in the limits: ``"GET service/tickets/{id}/notes"`` (ids and
    query left out, so one endpoint is one key however many records it is asked for)."""
    parts = ["{id}" if p.isdigit() else p for p in path.split("?", 1)[0].strip("/").split("/")]
    return f"{method.upper()} {'/'.join(parts)}"
