"""Autotask over HTTP: the zone, the credentials, the request threshold, queries and error bodies.

The API of a database lives in a zone, found without credentials at ``zoneInformation?user=``
(once, unless ``zone_url`` pins it) and found again when the zone answers 401 (databases move
between zones). Calls carry the ``ApiIntegrationCode``, ``UserName`` and ``Secret`` headers and
pass through the tenant's ``CallLimits``: a rolling window for the whole database (10,000 calls an
hour by default) and at most three calls in flight per object endpoint. Close to the window's end,
``ThresholdInformation`` is asked how busy the database really is (other integrations count too),
and calls pause when it is nearly full.

Queries are ``POST {Entity}/query`` with ``MaxRecords`` ≤ 500, following
``pageDetails.nextPageUrl``; errors come as ``{"errors": [...]}``, sometimes with HTTP 500 for what
is not a server fault (``quirk``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
import structlog

from psatriage.errors import AuthFailed, NotFound, PermanentError, PsatriageError, TransientError
from psatriage.psa.autotask.config import AutotaskConfig
from psatriage.psa.client import Failure, Form, Params, PSAClient
from psatriage.psa.paging import follow, on_origin
from psatriage.psa.wire import JSON, lower_keys, origin_of, trusted_url

log = structlog.get_logger(__name__)

API_VERSION = "V1.0"
ZONE_HOST_SUFFIX = ".autotask.net"
THRESHOLD = "ThresholdInformation"
THRESHOLD_PAUSE_AT = 0.95  # of the database's threshold: stop calling for a while
THRESHOLD_RECHECK_SECONDS = 60.0  # ask ThresholdInformation at most this often

# The "500 that is not a server fault" quirk (django-autotask comments): these texts come back
# with HTTP 500. [UNSURE] the exact wording of validation messages; matched loosely.
_PERMISSION = "does not have the adequate permissions"
_NOT_FOUND = "no matching records found"
_VALIDATION = re.compile(
    r"invalid|not valid|inactive|not active|picklist|parent|does not exist|is required", re.I
)


class AutotaskClient(PSAClient):
    """Authenticated, limited calls to one Autotask database. Shared by a tenant's threads."""

    psa: ClassVar[str] = "Autotask"
    principal: ClassVar[str] = "the API user"
    default_retry_after: ClassVar[float | None] = 60.0  # go-autotask's wait for a bare 429

    def __init__(
        self,
        tenant: str,
        config: AutotaskConfig,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        secrets = (config.secret.get_secret_value(), config.integration_code.get_secret_value())
        super().__init__(http, config.call_limits(f"autotask:{tenant}"), config, scrub=secrets)
        self.config = config
        self._pinned = config.zone_url is not None
        self._zone = _api_root(config.zone_url) if config.zone_url else None
        self._zone_lock = threading.Lock()
        self._pause_seconds = max(1.0, config.window_seconds / 12)
        self._clock = clock
        self._threshold_lock = threading.Lock()
        self._checked_at = float("-inf")
        self._paused_until = float("-inf")

    # -- calls ------------------------------------------------------------------------------------

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        """One request to ``{zone}/V1.0/{path}`` (or to a next-page URL, moved onto the zone's
        origin), the zone discovered again once after a 401; paused while the database is
        nearly out of calls."""
        if path != THRESHOLD:
            self._respect_threshold()
        root = self._current_zone()
        response = self._send(method, path, root, json_body)
        if response.status_code == 401 and self._rediscovered(root):
            response = self._send(method, path, self._current_zone(), json_body)
        return response

    def query(
        self, entity: str, filters: list[JSON], *, what: str, include: tuple[str, ...] = ()
    ) -> list[JSON]:
        """Every record of ``POST {entity}/query`` (all pages)."""
        body: JSON = {"filter": filters, "MaxRecords": self.config.page_size}
        if include:
            body["IncludeFields"] = list(include)
        return self.pages(self.json("POST", f"{entity}/query", what=what, json_body=body), what)

    def pages(self, first: Any, what: str) -> list[JSON]:
        """The items of a query answer and of every page after it (``nextPageUrl``)."""
        answers = follow(first, _next_page, lambda url: self.json("GET", url, what=what))
        return [item for answer in answers for item in _items(answer)]

    def threshold(self) -> tuple[int, int, int]:
        """``(current count, threshold, timeframe)`` from ``ThresholdInformation``."""
        data = lower_keys(self.json("GET", THRESHOLD, what="the request threshold"))
        return (
            _int(data.get("currenttimeframerequestcount")),
            _int(data.get("externalrequestthreshold")),
            _int(data.get("requestthresholdtimeframe")),
        )

    @property
    def zone(self) -> str:
        """The zone's API root (``https://webservicesN.autotask.net/ATServicesRest/V1.0/``)."""
        return self._current_zone()

    @property
    def known_zone(self) -> str | None:
        """The zone if configured or already discovered (no call is made), else None."""
        with self._zone_lock:
            return self._zone

    # -- hooks of the error ladder ----------------------------------------------------------------

    def detail(self, response: httpx.Response) -> str:
        messages = error_messages(response)
        return (": " + "; ".join(messages))[:500] if messages else ""

    def quirk(self, failure: Failure) -> PsatriageError | None:
        """Autotask's HTTP 500 for a refused permission, a missing record or a rule."""
        if failure.status != 500:
            return None
        what, detail = failure.what, failure.detail
        text = " ".join(error_messages(failure.response)).lower()
        if _PERMISSION in text:
            return AuthFailed(
                f"Autotask says the API user lacks a permission for {what}{detail}; "
                "widen its security level"
            )
        if _NOT_FOUND in text:
            return NotFound(f"{what} not found{detail}")
        if _VALIDATION.search(text):
            return failure.rejected(f"Autotask rejected {what} (500){detail}")
        return None

    # -- internals --------------------------------------------------------------------------------

    def _send(self, method: str, path: str, root: str, json_body: object) -> httpx.Response:
        url = on_origin(path, root) if path.startswith(("http://", "https://")) else root + path
        headers = {
            "ApiIntegrationCode": self.config.integration_code.get_secret_value(),
            "UserName": self.config.username,
            "Secret": self.config.secret.get_secret_value(),
            "Accept": "application/json",
        }
        endpoint = object_endpoint(httpx.URL(url).path)
        return self.send(method, url, endpoint=endpoint, headers=headers, json_body=json_body)

    def _current_zone(self) -> str:
        with self._zone_lock:
            if self._zone is None:
                self._zone = self._discover()
            return self._zone

    def _rediscovered(self, used: str) -> bool:
        """After a 401: whether the zone moved since ``used`` (asking discovery once more)."""
        if self._pinned:
            return False
        with self._zone_lock:
            if self._zone == used:
                self._zone = self._discover()
            return self._zone != used

    def _discover(self) -> str:
        """The zone of the API user, asked without credentials and outside the limits (it is not
        a call to the database's API)."""
        discovery = self.config.discovery_url
        url = f"{discovery}/{API_VERSION}/zoneInformation"
        response = self.send_unlimited("GET", url, params={"user": self.config.username})
        self.raise_for(response, "the zone of the API user")
        try:
            zone = lower_keys(response.json()).get("url")
        except ValueError:
            zone = None
        if not isinstance(zone, str) or not zone:
            raise AuthFailed(f"Autotask knows no zone for the API user {self.config.username!r}")
        if not _zone_allowed(zone, discovery):
            raise PermanentError(f"Autotask zone discovery named an untrusted host ({zone!r})")
        log.info("autotask zone discovered", zone=zone)
        return _api_root(zone)

    def _respect_threshold(self) -> None:
        """Pause when the database is nearly out of calls; ask the API when we are close."""
        now = self._clock()
        with self._threshold_lock:
            if now < self._paused_until:
                raise TransientError(
                    "Autotask's hourly request threshold is nearly reached; pausing",
                    retry_after=self._paused_until - now,
                )
            if (
                self.limits.used()
                < self.config.threshold_check_at * self.config.requests_per_window
            ):
                return
            if now - self._checked_at < THRESHOLD_RECHECK_SECONDS:
                return
            self._checked_at = now
        try:
            count, threshold, timeframe = self.threshold()
        except (TransientError, PermanentError, AuthFailed) as exc:
            log.warning("autotask threshold information unavailable", error=str(exc))
            return
        if threshold <= 0:
            return
        if count >= THRESHOLD_PAUSE_AT * threshold:
            with self._threshold_lock:
                self._paused_until = now + self._pause_seconds
            log.error(
                "autotask request threshold nearly reached; pausing calls",
                count=count,
                threshold=threshold,
                timeframe=timeframe,
                pause_seconds=self._pause_seconds,
            )
            raise TransientError(
                f"Autotask has used {count} of {threshold} requests in its window; pausing",
                retry_after=self._pause_seconds,
            )
        log.warning("autotask request threshold getting close", count=count, threshold=threshold)


def error_messages(response: httpx.Response) -> list[str]:
    """The messages of ``{"errors": ["..." | {"message": "..."}]}``, or none."""
    try:
        body = lower_keys(response.json())
    except ValueError:
        return []
    errors = body.get("errors")
    if not isinstance(errors, list):
        return [str(body["message"])] if body.get("message") else []
    messages = []
    for error in errors:
        if isinstance(error, str):
            messages.append(error)
        elif isinstance(error, Mapping) and lower_keys(error).get("message"):
            messages.append(str(lower_keys(error)["message"]))
    return messages


def object_endpoint(path: str) -> str:
    """The object endpoint a call counts against, whatever its method (Autotask limits threads
    per object): ``.../V1.0/Tickets/42/Notes`` → ``Tickets/Notes``."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if API_VERSION in parts:
        parts = parts[parts.index(API_VERSION) + 1 :]
    if not parts:
        return ""
    if len(parts) >= 3 and parts[1].isdigit():
        return f"{parts[0]}/{parts[2]}"
    return parts[0]


def _api_root(zone: str) -> str:
    """``https://host/ATServicesRest/`` → ``https://host/ATServicesRest/V1.0/``."""
    zone = zone.rstrip("/")
    if zone.endswith("/" + API_VERSION):
        zone = zone[: -len(API_VERSION) - 1]
    return f"{zone}/{API_VERSION}/"


def _zone_allowed(zone: str, discovery: str) -> bool:
    """Credentials only go to Autotask's HTTPS hosts, or to where discovery itself was asked."""
    return trusted_url(
        zone,
        origins=(origin_of(httpx.URL(discovery)),),
        https_host=lambda url: url.host.endswith(ZONE_HOST_SUFFIX),
    )


def _items(data: object) -> list[JSON]:
    items = lower_keys(data).get("items")
    if not isinstance(items, list):
        raise PermanentError("Autotask answered a query without 'items'")
    return [item for item in items if isinstance(item, dict)]


def _next_page(data: object) -> str | None:
    url = lower_keys(lower_keys(data).get("pagedetails")).get("nextpageurl")
    return url if isinstance(url, str) and url else None


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0
