"""HaloPSA over HTTP: the API application's access token, paging and Halo's error bodies.

Every request to Halo, token and ``/api/authinfo`` requests included, counts against the tenant's
``CallLimits`` (Halo publishes no limit; the tenant's ``requests_per_window``, ``window_seconds``
and ``concurrent_per_endpoint`` say how far to go): a burst of token requests (many processes
starting, repeated 401s) is what a limit should hold back. They are rare (about one per token
lifetime and deployment, or process when tokens are not shared).

The token (OAuth2 client credentials) is one ``TokenCache`` per tenant, shared by the worker
threads and, where the Runtime shares tokens, by every worker process: one per Halo API
application (instance, client id, scope and tenant). Halo invalidates earlier tokens when a new
one is issued [UNSURE: from django-psa's comment], which is why it is shared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import httpx
import structlog

from psatriage.errors import AuthFailed
from psatriage.psa.client import Form, Params, PSAClient, endpoint_of
from psatriage.psa.halopsa.config import HaloPSAConfig
from psatriage.psa.halopsa.wire import as_int, error_message, one_object, rows
from psatriage.psa.paging import numbered
from psatriage.psa.tokens import Token, TokenCache, cache_name, with_token
from psatriage.psa.wire import JSON, origin_of, trusted_url
from psatriage.shared import tokens as shared_tokens

log = structlog.get_logger(__name__)

DEFAULT_LIFETIME = 3600.0  # seconds, when the token answer has no expires_in [UNSURE]
_JSON_HEADERS = {"Accept": "application/json"}


class HaloClient(PSAClient):
    """The Halo REST API of one tenant (``{url}/api``), shared by the worker threads."""

    psa: ClassVar[str] = "HaloPSA"
    principal: ClassVar[str] = "the API application"
    rejected_statuses: ClassVar[frozenset[int]] = frozenset({400, 409, 422})

    def __init__(self, tenant: str, config: HaloPSAConfig, http: httpx.Client) -> None:
        secrets = (config.client_secret, config.webhook_secret, config.webhook_path_token)
        super().__init__(
            http,
            config.call_limits(f"halopsa:{tenant}"),
            config,
            scrub=(s.get_secret_value() for s in secrets if s is not None),
        )
        self.config = config
        self._root = f"{config.url}/api"
        self._token_url: str | None = None
        login = (config.url, config.auth_url or "", config.client_id, config.scope)
        self.tokens = TokenCache(
            cache_name("halopsa", *login, config.tenant or ""),
            self._login,
            shared=shared_tokens.current(),
        )

    def __repr__(self) -> str:
        return f"HaloClient(root={self._root!r})"

    # -- calls ------------------------------------------------------------------------------------

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        """One request with the shared token; a 401 renews the token (see ``with_token``)."""
        endpoint = endpoint_of(method, path)

        def attempt(token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}", **_JSON_HEADERS}
            return self.send(
                method,
                f"{self._root}/{path}",
                endpoint=endpoint,
                headers=headers,
                params=params,
                json_body=json_body,
            )

        return with_token(self.tokens, attempt)

    def record(self, method: str, path: str, *, what: str, **kwargs: Any) -> JSON:
        """``call`` and the one record it answers (a one-element array, as POSTs return, is
        unwrapped)."""
        return one_object(self.json(method, path, what=what, **kwargs), what)

    def get_list(
        self, path: str, key: str, *, what: str, params: Params | None = None
    ) -> list[JSON]:
        """A lookup list (most are plain arrays, some wrapped), read in one call."""
        return rows(self.json("GET", path, params=params, what=what), key)[0]

    def get_all(self, path: str, key: str, *, what: str, params: Params) -> Iterator[JSON]:
        """The records of a paged list (``pageinate``, ``page_size``, ``page_no``), read page by
        page as they are consumed."""

        def page(number: int) -> tuple[list[JSON], int | None]:
            query = {
                **params,
                "pageinate": "true",
                "page_size": self.config.page_size,
                "page_no": number,
            }
            return rows(self.json("GET", path, params=query, what=what), key)

        return numbered(page, one_page_without_total=True)

    # -- hooks of the error ladder ----------------------------------------------------------------

    def detail(self, response: httpx.Response) -> str:
        """': message' from any of Halo's error shapes (a proxy's HTML page says nothing)."""
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
            if "<html" in body[:500].lower():
                body = ""
        text = " ".join(error_message(body).split())[:300]
        return f": {text}" if text else ""

    # -- the access token -------------------------------------------------------------------------

    def _login(self, previous: Token | None) -> Token:
        """A new token for the API application (client credentials)."""
        url = self._token_url or self._token_endpoint()
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.get_secret_value(),
            "scope": self.config.scope,
        }
        started = self.tokens.now()
        response = self.send(
            "POST", url, endpoint="POST auth/token", headers=_JSON_HEADERS, data=form
        )
        if response.status_code in (400, 401, 403):
            raise AuthFailed(
                f"HaloPSA refused the client credentials ({response.status_code})"
                f"{self.scrubbed(self.detail(response))}; check client_id, client_secret, scope "
                "and tenant"
            )
        self.raise_for(response, "the access token")
        data = self.json_of(response, "the token request")
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthFailed("HaloPSA's token answer has no access_token")
        lifetime = float(as_int(data.get("expires_in")) or DEFAULT_LIFETIME)
        # Renew `margin` seconds early; a lifetime shorter than that is renewed at half-life.
        margin = self.config.token_refresh_margin_seconds
        early = margin if lifetime > margin else lifetime / 2
        self._token_url = url
        log.info("halopsa access token issued", instance=self.config.url, expires_in=lifetime)
        return Token(token, started + lifetime - early)

    def _token_endpoint(self) -> str:
        """``{auth_url}/token`` from ``/api/authinfo``, else ``{instance}/auth/token``.

        ``?tenant=`` is added for hosted multi-tenant instances: the configured tenant, else
        the ``tenant_id`` authinfo names (as HaloAPI does).
        """
        tenant = self.config.tenant
        if self.config.auth_url is not None:
            base = self.config.auth_url
        else:
            info = self._authinfo()
            auth_url = info.get("auth_url")
            if isinstance(auth_url, str) and auth_url.strip():
                base = auth_url.strip().rstrip("/")
                if not auth_server_allowed(base, self.config.url):
                    raise AuthFailed(
                        "HaloPSA's /api/authinfo names an authorisation server psatriage will not "
                        "send the client secret to (not HTTPS, or with credentials in it); set "
                        "connection.auth_url"
                    )
                if tenant is None and info.get("tenant_id") not in (None, ""):
                    tenant = str(info["tenant_id"])
            else:
                base = f"{self.config.url}/auth"
        url = httpx.URL(f"{base}/token")
        if tenant:
            url = url.copy_merge_params({"tenant": tenant})
        return str(url)

    def _authinfo(self) -> Mapping[str, object]:
        response = self.send(
            "GET", f"{self._root}/authinfo", endpoint="GET authinfo", headers=_JSON_HEADERS
        )
        if response.status_code == 429 or response.status_code >= 500:
            self.raise_for(response, "/api/authinfo")
        if response.status_code != 200:
            return {}  # older or on-premise instances: use the default token endpoint
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def auth_server_allowed(url: str, instance_url: str) -> bool:
    """Whether the client secret may be sent there: HTTPS, or the instance's own origin."""
    return trusted_url(
        url, origins=(origin_of(httpx.URL(instance_url)),), https_host=lambda _: True
    )
