"""The HTTP side of the Autotask adapter: zone, headers, limits, paging and the error mapping.

Every call goes to the tenant's *zone* (``{zone}/V1.0/...``), found once with
``GET {discovery}/V1.0/zoneInformation?user={UserName}`` (no credentials) and found again when the
zone answers 401 (databases move between zones). Calls carry the ``ApiIntegrationCode``,
``UserName`` and ``Secret`` headers and pass through one ``CallLimits`` per adapter: a rolling
window for the whole database (10,000 calls an hour by default) and at most three calls in flight
per object endpoint. Close to the window's end, ``ThresholdInformation`` is asked how busy the
database really is (other integrations count too), and calls pause when it is nearly full.

Queries are ``POST {Entity}/query`` with ``MaxRecords`` ≤ 500, following
``pageDetails.nextPageUrl``; errors come as ``{"errors": [...]}`` and are mapped by ``raise_for``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.limits import CallLimits
from psatriage.psa._wire import lower_keys as _ci
from psatriage.psa._wire import retry_after as _retry_after

log = structlog.get_logger(__name__)

API_VERSION = "V1.0"
ZONE_HOST_SUFFIX = ".autotask.net"
THRESHOLD_PAUSE_AT = 0.95  # of the database's threshold: stop calling for a while
THRESHOLD_RECHECK_SECONDS = 60.0  # ask ThresholdInformation at most this often
DEFAULT_RETRY_AFTER = 60.0  # for a 429 without Retry-After (go-autotask's default)
_JSON = dict[str, Any]

# The "500 that is not a server fault" quirk (django-autotask comments): these texts come back
# with HTTP 500. [UNSURE] the exact wording of validation messages; matched loosely.
_PERMISSION = "does not have the adequate permissions"
_NOT_FOUND = "no matching records found"
_VALIDATION = re.compile(
    r"invalid|not valid|inactive|not active|picklist|parent|does not exist|is required", re.I
)


class AutotaskClient:
    """Authenticated, limited calls to one Autotask database. Shared by a tenant's threads."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        username: str,
        secret: SecretStr,
        integration_code: SecretStr,
        discovery_url: str,
        zone_url: str | None,
        limits: CallLimits,
        per_window: int,
        threshold_check_at: float,
        window_seconds: float,
        page_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.limits = limits
        self.page_size = page_size
        self._username, self._secret, self._code = username, secret, integration_code
        self._discovery = discovery_url
        self._pinned = zone_url is not None
        self._zone = _api_root(zone_url) if zone_url else None
        self._zone_lock = threading.Lock()
        self._per_window, self._check_at = per_window, threshold_check_at
        self._pause_seconds = max(1.0, window_seconds / 12)
        self._clock = clock
        self._threshold_lock = threading.Lock()
        self._checked_at = float("-inf")
        self._paused_until = float("-inf")

    # -- calls ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: object = None,
        rejected: type[PermanentError] = PermanentError,
    ) -> Any:
        """One API call to ``{zone}/V1.0/{path}``; returns the decoded JSON answer."""
        return self._exchange(method, _at(path), what, json_body, rejected)

    def query(
        self,
        entity: str,
        filters: list[_JSON],
        *,
        what: str,
        include: tuple[str, ...] = (),
    ) -> list[_JSON]:
        """Every record of ``POST {entity}/query`` (all pages)."""
        body: _JSON = {"filter": filters, "MaxRecords": self.page_size}
        if include:
            body["IncludeFields"] = list(include)
        return self.pages(self.call("POST", f"{entity}/query", what=what, json_body=body), what)

    def pages(self, first: Any, what: str) -> list[_JSON]:
        """The items of a query answer and of every page after it (``nextPageUrl``)."""
        data, items = first, _items(first)
        seen: set[str] = set()
        while (next_url := _next_page(data)) is not None and next_url not in seen:
            seen.add(next_url)
            data = self._exchange("GET", _page_target(next_url), what, None)
            items.extend(_items(data))
        return items

    def threshold(self) -> tuple[int, int, int]:
        """``(current count, threshold, timeframe)`` from ``ThresholdInformation``."""
        what = "the request threshold"
        data = _ci(self._exchange("GET", _at("ThresholdInformation"), what, None, throttled=False))
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

    # -- internals --------------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        target: Callable[[str], str],
        what: str,
        json_body: object,
        rejected: type[PermanentError] = PermanentError,
        *,
        throttled: bool = True,
    ) -> Any:
        """Send (on the zone, discovered again once after a 401), map errors, decode JSON."""
        if throttled:
            self._respect_threshold()
        root = self._current_zone()
        response = self._send(method, target(root), root, json_body)
        if response.status_code == 401 and self._rediscovered(root):
            root = self._current_zone()
            response = self._send(method, target(root), root, json_body)
        raise_for(response, what, rejected=rejected)
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentError(
                f"Autotask answered {what} with something other than JSON"
            ) from exc

    def _send(self, method: str, url: str, root: str, json_body: object) -> httpx.Response:
        endpoint = endpoint_of(url[len(root) :] if url.startswith(root) else httpx.URL(url).path)
        headers = {
            "ApiIntegrationCode": self._code.get_secret_value(),
            "UserName": self._username,
            "Secret": self._secret.get_secret_value(),
            "Accept": "application/json",
        }
        with self.limits.call(endpoint):
            try:
                return self.http.request(
                    method, url, json=json_body, headers=headers, follow_redirects=False
                )
            except httpx.TransportError as exc:
                raise TransientError(
                    f"Autotask did not answer {method} {endpoint}: {type(exc).__name__}"
                ) from exc

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
        url = f"{self._discovery}/{API_VERSION}/zoneInformation"
        try:
            response = self.http.get(url, params={"user": self._username}, follow_redirects=False)
        except httpx.TransportError as exc:
            raise TransientError(f"Autotask zone discovery failed: {type(exc).__name__}") from exc
        raise_for(response, "the zone of the API user")
        try:
            zone = _ci(response.json()).get("url")
        except ValueError:
            zone = None
        if not isinstance(zone, str) or not zone:
            raise AuthFailed(f"Autotask knows no zone for the API user {self._username!r}")
        if not _zone_allowed(zone, self._discovery):
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
            if self.limits.used() < self._check_at * self._per_window:
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


# -- error mapping ----------------------------------------------------------------------------


def raise_for(
    response: httpx.Response, what: str, *, rejected: type[PermanentError] = PermanentError
) -> None:
    """Turn a non-2xx answer into the error tree (transport errors are mapped in ``_send``)."""
    status = response.status_code
    if status < 300:
        return
    messages = error_messages(response)
    detail = (": " + "; ".join(messages))[:500] if messages else ""
    text = " ".join(messages).lower()
    retry_after = _retry_after(response.headers.get("retry-after"))
    if status in (401, 403):
        raise AuthFailed(f"Autotask refused the API user ({status}) for {what}{detail}")
    if status == 429:
        raise TransientError(
            f"Autotask answered 429 for {what}{detail}",
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
        )
    if status == 500 and _PERMISSION in text:
        raise AuthFailed(
            f"Autotask says the API user lacks a permission for {what}{detail}; "
            "widen its security level"
        )
    if status == 500 and _NOT_FOUND in text:
        raise PermanentError(f"{what} not found{detail}")
    if status == 500 and _VALIDATION.search(text):
        raise rejected(f"Autotask rejected {what} (500){detail}")
    if status >= 500:
        raise TransientError(
            f"Autotask answered {status} for {what}{detail}", retry_after=retry_after
        )
    if status == 404:
        raise PermanentError(f"{what} not found")
    if status == 400:
        raise rejected(f"Autotask rejected {what} (400){detail}")
    if status < 400:
        raise PermanentError(f"Autotask redirected the request for {what} ({status})")
    raise PermanentError(f"Autotask answered {status} for {what}{detail}")


def error_messages(response: httpx.Response) -> list[str]:
    """The messages of ``{"errors": ["..." | {"message": "..."}]}``, or none."""
    try:
        body = _ci(response.json())
    except ValueError:
        return []
    errors = body.get("errors")
    if not isinstance(errors, list):
        return [str(body["message"])] if body.get("message") else []
    messages = []
    for error in errors:
        if isinstance(error, str):
            messages.append(error)
        elif isinstance(error, Mapping) and _ci(error).get("message"):
            messages.append(str(_ci(error)["message"]))
    return messages


# -- helpers ----------------------------------------------------------------------------------


def endpoint_of(path: str) -> str:
    """The object endpoint a call counts against: ``Tickets/42/Notes`` → ``Tickets/Notes``."""
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


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _zone_allowed(zone: str, discovery: str) -> bool:
    """Credentials only go to Autotask's HTTPS hosts, or to where discovery itself was asked."""
    try:
        url = httpx.URL(zone)
    except httpx.InvalidURL:
        return False
    if url.userinfo or not url.host:
        return False
    if _origin(url) == _origin(httpx.URL(discovery)):
        return True
    return url.scheme == "https" and url.host.endswith(ZONE_HOST_SUFFIX)


def _at(path: str) -> Callable[[str], str]:
    """The URL of ``path`` under whichever zone root is current when the call is sent."""
    return lambda root: root + path


def _page_target(url: str) -> Callable[[str], str]:
    """A ``nextPageUrl`` moved onto our own zone's origin (credentials never go elsewhere)."""
    raw_path = httpx.URL(url).raw_path
    return lambda root: str(httpx.URL(root).copy_with(raw_path=raw_path))


def _items(data: object) -> list[_JSON]:
    items = _ci(data).get("items")
    if not isinstance(items, list):
        raise PermanentError("Autotask answered a query without 'items'")
    return [item for item in items if isinstance(item, dict)]


def _next_page(data: object) -> str | None:
    url = _ci(_ci(data).get("pagedetails")).get("nextpageurl")
    return url if isinstance(url, str) and url else None


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0
