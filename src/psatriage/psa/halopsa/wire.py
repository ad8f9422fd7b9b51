"""What HaloPSA sends, read: its list shapes, its integer and boolean values, its HTML fields.

Lists come either wrapped (``{"record_count": n, "tickets": [...]}``) or as a plain array (most
lookups); ``rows`` reads both. Ids come as integers or digit strings, booleans as ``true`` or
``"True"``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from psatriage.errors import PermanentError
from psatriage.psa.wire import JSON

_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\b[^>]*>", re.IGNORECASE)


def one_object(data: Any, what: str) -> JSON:
    """The answer as one object (a one-element array, as POSTs return, is unwrapped)."""
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


def is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def text_of(html_text: str) -> str:
    """Readable text from a Halo HTML field (``details_html``, ``note_html``)."""
    text = _TAG.sub("", _BREAK.sub("\n", html_text))
    lines = (" ".join(line.split()) for line in html.unescape(text).splitlines())
    return "\n".join(line for line in lines if line)


def note_html(text: str) -> str:
    """Our plain-text note as Halo's ``note_html``: escaped, one ``<br>`` per line break."""
    return "<p>" + "<br>".join(html.escape(line) for line in text.splitlines()) + "</p>"


def error_message(body: Any) -> str:
    """The message of any of Halo's error shapes: ``{resultCode, errorMessage}``, a .NET exception
    ``{ClassName, Message}``, ``{Message}``, OAuth's ``{error, error_description}``, a string."""
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(error_message(item) for item in body[:5] if item)
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
        return error_message(error)
    if error:
        described = ci.get("error_description")
        return f"{error}: {described}" if described else str(error)
    return ""
