"""HaloPSA credentials: the OAuth2 token we send, and the webhook authentication Halo sends.

``TokenSource`` holds one client-credentials token for one tenant, shared by every worker thread
of the process. Halo invalidates earlier tokens when a new one is issued [UNSURE: from
django-psa's comment], so at most one thread asks for a token at a time (a lock), a token is
replaced shortly before it expires, and a 401 replaces it once — unless another thread already
did.

Where the deployment shares tokens between processes (``psatriage.shared_tokens``: a Redis or
PostgreSQL queue and ``PSATRIAGE_SECRET_KEY``), the whole deployment holds one token per Halo API
application (instance, client id, scope and tenant): a process keeps a copy while it is valid;
when it needs another (none yet, due for renewal, or refused with 401) it first takes the one
another process shared, if that is neither due nor the one refused; only then, holding a lock
across processes and after reading the shared one again, does it ask Halo and share the answer.
A store that does not answer costs nothing but the sharing: the process asks Halo itself. A 401
on a token this call did not have issued (another thread's or process's) gets one more
replacement, so only a token issued for the call can make it fail with ``AuthFailed``.

Token and ``/api/authinfo`` requests count against the tenant's call limits like API calls: they
are requests to Halo too, and a burst of them (many processes starting, repeated 401s) is what a
limit should hold back. They are rare (about one per token lifetime and deployment, or process
when tokens are not shared), so this costs next to nothing; a full window makes them fail as
``TransientError`` and the work is rescheduled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import httpx
import structlog
from pydantic import SecretStr

from psatriage.errors import AuthFailed, WebhookRejected
from psatriage.limits import CallLimits
from psatriage.psa._halopsa_http import as_int, error_detail, json_of, raise_for, send
from psatriage.psa.base import PATH_TOKEN_HEADER
from psatriage.shared_tokens import SharedTokens

log = structlog.get_logger(__name__)

WebhookAuth = Literal["hmac", "basic", "header"]
WEBHOOK_NAME = "psatriage: categorize new tickets"
DEFAULT_LIFETIME = 3600.0  # seconds, when the token answer has no expires_in [UNSURE]
LOCK_WAIT_SECONDS = 45.0  # for another process's token request (10 s to connect, 30 s to answer)


class TokenSource:
    """A Bearer token for the Halo API of one tenant; see the module docstring."""

    def __init__(
        self,
        http: httpx.Client,
        limits: CallLimits,
        *,
        instance_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str,
        tenant: str | None,
        auth_url: str | None,
        margin_seconds: float,
        shared: SharedTokens | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._limits = limits
        self._instance = instance_url
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._tenant = tenant
        self._auth_url = auth_url
        self._margin = margin_seconds
        self._shared = shared
        self._clock = clock
        self._lock = threading.Lock()
        self._token_url: str | None = None
        self._cached: tuple[str, float] | None = None  # (token, refresh at), replaced whole
        application = "\n".join((instance_url, auth_url or "", client_id, scope, tenant or ""))
        self._name = "halopsa:" + hashlib.sha256(application.encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"TokenSource(instance={self._instance!r})"

    def current(self) -> str:
        """A token that is not due for renewal (fetched now if there is none)."""
        cached = self._cached
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached[1]:
                return cached[0]  # another thread renewed it while we waited
            return self._renew(None)[0]

    def replace(self, refused: str) -> tuple[str, bool]:
        """A token to use after the API refused ``refused`` (401), one fetch for all threads and
        processes; and whether it was issued for this call (False: another thread or process
        had it issued, so a 401 on it is worth one more ``replace``)."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] != refused and self._clock() < cached[1]:
                return cached[0], False
            return self._renew(refused)

    # -- under the lock -----------------------------------------------------------------------

    def _renew(self, refused: str | None) -> tuple[str, bool]:
        """The shared token if another process renewed it, else a new one from Halo (shared)."""
        shared = self._shared
        if shared is None:
            return self._fetch(), True
        token = self._adopt(shared, refused)
        if token is not None:
            return token, False
        with shared.refreshing(self._name, LOCK_WAIT_SECONDS):
            token = self._adopt(shared, refused)  # renewed while we waited for the lock?
            if token is not None:
                return token, False
            token = self._fetch()
            assert self._cached is not None  # set by _fetch
            shared.put(self._name, token, time.time() + self._cached[1] - self._clock())
            return token, True

    def _adopt(self, shared: SharedTokens, refused: str | None) -> str | None:
        """The shared token, kept as this process's, unless absent, due or ``refused``."""
        found = shared.get(self._name)
        if found is None:
            return None
        token, expires_at = found
        left = expires_at - time.time()
        if token == refused or left <= 0:
            return None
        self._cached = (token, self._clock() + left)
        log.debug("halopsa access token taken from the shared store", instance=self._instance)
        return token

    def _fetch(self) -> str:
        url = self._token_url or self._discover()
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret.get_secret_value(),
            "scope": self._scope,
        }
        started = self._clock()
        response = send(
            self._http,
            self._limits,
            "POST",
            url,
            endpoint="POST auth/token",
            headers={"Accept": "application/json"},
            data=form,
            unanswered="HaloPSA's token endpoint did not answer",
        )
        secrets = (self._secret.get_secret_value(),)
        if response.status_code in (400, 401, 403):
            raise AuthFailed(
                f"HaloPSA refused the client credentials ({response.status_code})"
                f"{error_detail(response, secrets)}; check client_id, client_secret, scope "
                "and tenant"
            )
        raise_for(response, "the access token", scrub=secrets)
        data = json_of(response, "the token request")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthFailed("HaloPSA's token answer has no access_token")
        lifetime = float(as_int(data.get("expires_in")) or DEFAULT_LIFETIME)
        # Renew `margin` seconds early; a lifetime shorter than that is renewed at half-life.
        early = self._margin if lifetime > self._margin else lifetime / 2
        self._cached = (token, started + lifetime - early)
        self._token_url = url
        log.info("halopsa access token issued", instance=self._instance, expires_in=lifetime)
        return token

    def _discover(self) -> str:
        """``{auth_url}/token`` from ``/api/authinfo``, else ``{instance}/auth/token``.

        ``?tenant=`` is added for hosted multi-tenant instances: the configured tenant, else
        the ``tenant_id`` authinfo names (as HaloAPI does).
        """
        tenant = self._tenant
        if self._auth_url is not None:
            base = self._auth_url
        else:
            info = self._authinfo()
            auth_url = info.get("auth_url")
            if isinstance(auth_url, str) and auth_url.strip():
                base = auth_url.strip().rstrip("/")
                if not auth_server_allowed(base, self._instance):
                    raise AuthFailed(
                        "HaloPSA's /api/authinfo names an authorisation server psatriage will not "
                        "send the client secret to (not HTTPS, or with credentials in it); set "
                        "connection.auth_url"
                    )
                if tenant is None and info.get("tenant_id") not in (None, ""):
                    tenant = str(info["tenant_id"])
            else:
                base = f"{self._instance}/auth"
        url = httpx.URL(f"{base}/token")
        if tenant:
            url = url.copy_merge_params({"tenant": tenant})
        return str(url)

    def _authinfo(self) -> Mapping[str, object]:
        response = send(
            self._http,
            self._limits,
            "GET",
            f"{self._instance}/api/authinfo",
            endpoint="GET authinfo",
            headers={"Accept": "application/json"},
            unanswered="HaloPSA did not answer /api/authinfo",
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise_for(response, "/api/authinfo")
        if response.status_code != 200:
            return {}  # older or on-premise instances: use the default token endpoint
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def auth_server_allowed(url: str, instance_url: str) -> bool:
    """Whether the client secret may be sent there: HTTPS, or the instance's own origin."""
    try:
        parsed, instance = httpx.URL(url), httpx.URL(instance_url)
    except httpx.InvalidURL:
        return False
    if parsed.userinfo or not parsed.host or parsed.scheme not in ("http", "https"):
        return False
    if parsed.scheme == "https":
        return True
    return (parsed.scheme, parsed.host, parsed.port) == (
        instance.scheme,
        instance.host,
        instance.port,
    )


# -- webhooks ---------------------------------------------------------------------------------


def verify_delivery(
    method: WebhookAuth,
    *,
    secret: SecretStr | None,
    path_token: SecretStr | None,
    header: str,
    username: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Raise ``WebhookRejected(401)`` unless the delivery carries this tenant's authentication.

    With ``secret``, ``method`` says how Halo sends it. ``hmac``: ``header`` = base64(HMAC-SHA256(
    key=secret, message=raw body)), as django-psa verifies Halo's "Token" header; ``basic``:
    ``Authorization: Basic user:secret``; ``header``: ``header`` holds the secret itself. With
    ``path_token``, the URL's secret segment (``PATH_TOKEN_HEADER``, set by the web edge only)
    must match too. Without either, everything is refused. Comparisons take constant time.
    """
    if secret is None and path_token is None:
        raise WebhookRejected("this tenant has no webhook authentication configured", status=401)
    if path_token is not None:
        given = headers.get(PATH_TOKEN_HEADER, "").encode()
        if not hmac.compare_digest(given, path_token.get_secret_value().encode()):
            raise WebhookRejected("the URL's secret segment is missing or wrong", status=401)
    if secret is not None:
        _check_secret(method, secret.get_secret_value().encode(), header, username, headers, body)


def _check_secret(
    method: WebhookAuth,
    key: bytes,
    header: str,
    username: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    if method == "basic":
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise WebhookRejected("the Authorization: Basic header is missing", status=401)
        expected = base64.b64encode(username.encode() + b":" + key)
        if not hmac.compare_digest(value.strip().encode(), expected):
            raise WebhookRejected("the Basic credentials are wrong", status=401)
        return
    given = headers.get(header.lower(), "").strip()
    if not given:
        raise WebhookRejected(f"the {header} header is missing", status=401)
    if method == "hmac":
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
        if not hmac.compare_digest(given.encode(), expected):
            raise WebhookRejected(f"the {header} signature does not match the body", status=401)
        return
    if not hmac.compare_digest(given.encode(), key):
        raise WebhookRejected(f"the {header} header does not hold the shared secret", status=401)


def webhook_request(
    url: str, method: WebhookAuth, *, secret: SecretStr | None, header: str, username: str
) -> dict[str, object]:
    """The ``POST /api/Webhook`` element for an outbound webhook that calls ``url``.

    ``authentication_type`` "3" with ``algorithm`` 0 is what django-psa registers to receive the
    HMAC ``Token`` header. The enum is [UNSURE]: a third-party document lists 0 None, 1 Basic,
    2 Bearer, 3 API key; "basic" uses 1 and "header" uses 3 without an algorithm on that reading.
    Without a secret (a path token only) no authentication is set.
    """
    body: dict[str, object] = {
        "name": WEBHOOK_NAME,
        "url": url,
        "type": 0,  # an outbound webhook (1 is a runbook)
        "method": 0,  # POST
        "content_type": "application/json",
        "active": True,
        "certificate_id": 0,
        "inbound_authentication_type": 0,
        "runbook_start_type": 0,
    }
    if secret is None:
        return body
    password = secret.get_secret_value()
    if method == "basic":
        return body | {
            "authentication_type": "1",
            "basic_username": username,
            "basic_password": password,
        }
    body |= {"authentication_type": "3", "authentication_header": header}
    body["basic_password"] = password
    if method == "hmac":
        body["algorithm"] = 0
    return body


def new_ticket_binding(webhook_id: str, event_number: int) -> dict[str, object]:
    """The ``POST /api/Notification`` element binding the event to the webhook.

    The fields and their string values are those production code (django-psa) sends.
    """
    return {
        "webhook_id": webhook_id,
        "type": "-2",
        "delivery_method": "6",
        "name": "",
        "agent_id": "0",
        "slack_id": "0",
        "teams_id": "0",
        "email_list": "",
        "filter_type": "2",
        "restriction_type": "0",
        "sendpushnotification": False,
        "customisecolour": False,
        "eventno": str(event_number),
        "interval": "0",
        "useworkinghours": "0",
        "conditions": [],
        "emailtemplate_id": "32",
    }


def scrubbed(values: Iterable[SecretStr | None]) -> tuple[str, ...]:
    """Secret values to blank out of any message built from a HaloPSA answer."""
    return tuple(v.get_secret_value() for v in values if v is not None and v.get_secret_value())
