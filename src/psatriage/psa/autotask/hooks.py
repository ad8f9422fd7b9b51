"""Autotask webhook bodies: the ``X-Hook-Signature`` check and the fields of a delivery.

Autotask signs a delivery with ``sha1=<base64 HMAC-SHA1(secret key, body)>``. Which bytes it signs
is not settled [UNSURE, reference §2.1]: a public integration found that Autotask signs a .NET-style
serialization in which ``& < > ' " ` +`` inside strings and every non-ASCII character are written
as ``\\uXXXX``, while the body on the wire may carry them as plain UTF-8. So the raw bytes are
checked first and then the body re-escaped that way; both comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "x-hook-signature"
_ESCAPED = frozenset("&<>'\"`+")


def dotnet_escape(text: str) -> str:
    """Re-escape the strings of a JSON text the way Autotask's serializer writes them.

    Only characters inside string literals change; existing escapes are kept, except ``\\"``,
    which becomes ``\\u0022``. Characters outside the BMP become two UTF-16 escapes.
    """
    out: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string and escaped:
            out.append("u0022" if char == '"' else char)  # after the backslash already written
            escaped = False
        elif in_string and char == "\\":
            out.append(char)
            escaped = True
        elif char == '"':
            out.append(char)
            in_string = not in_string
        elif in_string and (char in _ESCAPED or ord(char) > 127):
            out.append(_utf16_escape(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"


def signature_matches(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` (``sha1=...``) signs ``body`` as it arrived or re-escaped."""
    given = header.strip()
    if given[:5].lower() == "sha1=":
        given = given[5:]
    try:
        expected = base64.b64decode(given, validate=True)
    except ValueError:
        return False
    if hmac.compare_digest(hmac.new(secret, body, hashlib.sha1).digest(), expected):
        return True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    escaped = dotnet_escape(text).encode("utf-8")
    if escaped == body:
        return False
    return hmac.compare_digest(hmac.new(secret, escaped, hashlib.sha1).digest(), expected)


def text_of(value: object) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)
