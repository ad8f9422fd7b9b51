"""HaloPSA over HTTP: the one request function, the one error mapping, the response shapes, and
small value parsers.

``send`` makes every request to Halo, token requests included, so each passes through the
tenant's ``CallLimits`` (Halo publishes no limit; the tenant's ``requests_per_window``,
``window_seconds`` and ``concurrent_per_endpoint`` say how far to go).

Halo's error bodies are not uniform (``{resultCode, errorMessage}``, a .NET exception
``{ClassName, Message}``, ``{Message}``, OAuth's ``{error, error_description}``, a JSON string or
plain text); ``raise_for`` reads all of them. Lists come either wrapped
(``{"record_count": n, "tickets": [...]}``) or as a plain array (most lookups); ``rows`` reads both.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.limits import CallLimits
from psatriage.psa._wire import retry_after

JSON = dict[str, Any]
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\b[^>]*>", re.IGNORECASE)
_ID = re.compile(r"/\d+(?=/|$)")


class RateLimited(TransientError):
    """HaloPSA answered 429. Retried briefly inside the call, then left to the job scheduler."""


def send(
    http: httpx.Client,
    limits: CallLimits,
    method: str,
    url: str,
    *,
    endpoint: str,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
    json_body: object = None,
    data: Mapping[str, str] | None = None,
    unanswered: str,
) -> httpx.Response:
    """Every request to Halo: counted against the tenant's ``limits`` as ``endpoint`` (a full
    window raises ``CallLimitReached`` before anything is sent); a transport failure is transient,
    its message "``unanswered``: ConnectTimeout"."""
    with limits.call(endpoint):
        try:
            return http.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise TransientError(f"{unanswered}: {type(exc).__name__}") from exc


def endpoint_of(method: str, path: str) -> str:
    """What an API call counts against: ``"GET Tickets/{id}"`` (ids and query left out, so one
    endpoint is one key however many records it is asked for)."""
    return f"{method.upper()} {_ID.sub('/{id}', path.split('?', 1)[0].strip('/'))}"


def raise_for(
    response: httpx.Response,
    what: str,
    *,
    rejected: type[PermanentError] = PermanentError,
    scrub: Iterable[str] = (),
) -> None:
    """Turn a non-2xx answer into the error tree (transport errors are mapped where sent)."""
    status = response.status_code
    if status < 300:
        return
    detail = error_detail(response, scrub)
    if status in (401, 403):
        raise AuthFailed(f"HaloPSA refused the API application ({status}) for {what}{detail}")
    if status == 429:
        raise RateLimited(
            f"HaloPSA is rate limiting (429) {what}{detail}",
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise TransientError(
            f"HaloPSA answered {status} for {what}{detail}",
            retry_after=retry_after(response.headers.get("retry-after")),
        )
    if status == 404:
        raise PermanentError(f"{what} not found")
    if status < 400:
        raise PermanentError(f"HaloPSA redirected the request for {what} ({status})")
    if status in (400, 409, 422):
        raise rejected(f"HaloPSA rejected {what} ({status}){detail}")
    raise PermanentError(f"HaloPSA answered {status} for {what}{detail}")


def error_detail(response: httpx.Response, scrub: Iterable[str] = ()) -> str:
    """': message' from any of Halo's error shapes, or '' (secrets replaced by '***')."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
        if "<html" in body[:500].lower():
            body = ""  # a proxy's error page says nothing useful
    text = _message(body)
    text = " ".join(text.split())[:300]
    for secret in scrub:
        if secret:
            text = text.replace(secret, "***")
    return f": {text}" if text else ""


def _message(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(_message(item) for item in body[:5] if item)
    if not isinstance(body, Mapping):
        return ""
    ci = {str(k).lower(): v for k, v in body.items()}
    if ci.get("errormessage"):
        code = ci.get("resultcode")
        return (
            f"{code}: {ci['errormessage']}" if code not in (None, "") else str(ci["errormessage"])
        )
    if ci.get("classname") and ci.get("message"):
        return f"{ci['classname']}: {ci['message']}"
    if ci.get("message"):
        return str(ci["message"])
    error = ci.get("error")
    if isinstance(error, Mapping):
        return _message(error)
    if error:
        described = ci.get("error_description")
        return f"{error}: {described}" if described else str(error)
    return ""


def json_of(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise PermanentError(f"HaloPSA answered {what} with something that is not JSON") from exc


def json_object(response: httpx.Response, what: str) -> JSON:
    """The answer as one object (a one-element array, as POSTs return, is unwrapped)."""
    data = json_of(response, what)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise PermanentError(f"HaloPSA answered {what} with no object")
    return data


def rows(data: Any, key: str) -> tuple[list[JSON], int | None]:
    """The records of a list answer and its ``record_count`` (None for a plain array)."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)], None
    if not isinstance(data, Mapping):
        return [], None
    found = data.get(key)
    if not isinstance(found, list):  # the wrapper's key varies; take its (only) list
        found = next((v for v in data.values() if isinstance(v, list)), [])
    return [r for r in found if isinstance(r, dict)], as_int(data.get("record_count"))


def as_int(value: object) -> int | None:
    """An integer id from an int or a digit string (Halo sends both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def positive(value: object) -> int | None:
    number = as_int(value)
    return number if number is not None and number > 0 else None


def numeric(value: str, what: str, error: type[PermanentError] = PermanentError) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise error(f"{what} {value!r} is not a HaloPSA id (a positive number)")
    return int(value)


def is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def timestamp(value: object) -> datetime | None:
    """Halo's date-times; those without an offset are UTC [UNSURE: not stated by Halo]."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def text_of(html_text: str) -> str:
    """Readable text from a Halo HTML field (``details_html``, ``note_html``)."""
    text = _TAG.sub("", _BREAK.sub("\n", html_text))
    lines = (" ".join(line.split()) for line in html.unescape(text).splitlines())
    return "\n".join(line for line in lines if line)


def note_html(text: str) -> str:
    """Our plain-text note as Halo's ``note_html``: escaped, one ``<br>`` per line break."""
    return "<p>" + "<br>".join(html.escape(line) for line in text.splitlines()) + "</p>"
