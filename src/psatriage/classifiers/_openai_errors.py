"""What an OpenAI-compatible server's errors mean: the psatriage error for each, by status and by
what the server says, with the server named in every message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from psatriage.classifiers._openai_capabilities import server_message
from psatriage.classifiers.base import clip
from psatriage.errors import AuthFailed, PermanentError, PsatriageError, TransientError

if TYPE_CHECKING:
    import openai

_MODEL_UNKNOWN = re.compile(
    r"model\b.{0,80}\b(not found|does not exist|unknown|no such|not available)|model_not_found"
    r"|unknown model|try pulling",
    re.IGNORECASE,
)
_OVER_CONTEXT = re.compile(
    r"context (window|length)|maximum context|exceeds? .{0,20}context", re.IGNORECASE
)
_BAD_REQUEST = re.compile(
    r"validation error|input should be|extra inputs are not permitted|unrecognized request"
    r"|unsupported parameter|invalid (request|argument|parameter)",
    re.IGNORECASE,
)


def map_error(
    exc: openai.OpenAIError, server: str, model: str, *, retry_after: float | None
) -> PsatriageError:
    """The one place where SDK errors become psatriage errors, by status and by what the server
    says; every message names the server."""
    import openai

    at = f"the model server at {server}"
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"{at} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(
            f"cannot reach {at}: {server_message(exc)}; is it running, and is base_url right?"
        )
    if not isinstance(exc, openai.APIStatusError):
        return PermanentError(f"the call to {at} failed: {clip(str(exc))}")
    status, message = exc.status_code, server_message(exc)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return AuthFailed(f"{at} refused the credentials (HTTP {status}): {message}")
    if status == 404 or _MODEL_UNKNOWN.search(message):
        return PermanentError(
            f"{at} does not serve model {model!r} (HTTP {status}): {message}; check model "
            "(for Azure azure_deployment), and that base_url is the API root"
        )
    if _OVER_CONTEXT.search(message):
        return PermanentError(
            f"the prompt does not fit the context of {model!r} at {server} (HTTP {status}): "
            f"{message}; lower max_tokens, offer fewer candidates, or give the server a larger "
            "context"
        )
    if status >= 500 and _BAD_REQUEST.search(message):
        return PermanentError(f"{at} cannot handle the request (HTTP {status}): {message}")
    if status in {408, 409, 429} or status >= 500:
        return TransientError(
            f"{at} is busy or failing (HTTP {status}): {message}",
            retry_after=retry_after,
        )
    return PermanentError(f"{at} rejected the request (HTTP {status}): {message}")


def scrub(exc: openai.OpenAIError, secret: str) -> None:
    """Remove the key from a vendor message that echoes it, so no traceback can show it."""
    import openai

    if not secret:
        return
    exc.args = tuple(a.replace(secret, "***") if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, openai.APIError):
        exc.message = exc.message.replace(secret, "***")
        if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
            exc.body["message"] = exc.body["message"].replace(secret, "***")
