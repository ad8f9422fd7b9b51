"""Calls to one Halo instance's API: the shared token, one renewal on 401, short 429 retries,
paging, the tenant's call limits, and the error mapping of ``_halopsa_http``.

The token is shared by the worker threads, and by the worker processes where the Runtime shares
tokens (``psatriage.shared_tokens``, taken when the client is built).

One ``CallLimits`` per adapter (per tenant and process) counts every request to Halo, token
requests included: a rolling window for the whole tenant and a cap on calls in flight per
endpoint. A full window raises ``TransientError`` (not ``RateLimited``), so it is not retried
here but rescheduled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx
import stamina

from psatriage import shared_tokens
from psatriage.errors import PermanentError
from psatriage.psa._halopsa_auth import TokenSource, scrubbed
from psatriage.psa._halopsa_config import HaloPSAConfig
from psatriage.psa._halopsa_http import (
    JSON,
    RateLimited,
    endpoint_of,
    json_of,
    raise_for,
    rows,
    send,
)

Params = Mapping[str, str | int]


class HaloClient:
    """The Halo REST API of one tenant (``{url}/api``), shared by the worker threads."""

    def __init__(self, tenant: str, config: HaloPSAConfig, http: httpx.Client) -> None:
        self._http = http
        self.limits = config.call_limits(f"halopsa:{tenant}")
        self._root = f"{config.url}/api"
        self._page_size = config.page_size
        self._max_wait = config.max_rate_limit_wait_seconds
        self._scrub = scrubbed(
            (config.client_secret, config.webhook_secret, config.webhook_path_token)
        )
        self.tokens = TokenSource(
            http,
            self.limits,
            instance_url=config.url,
            client_id=config.client_id,
            client_secret=config.client_secret,
            scope=config.scope,
            tenant=config.tenant,
            auth_url=config.auth_url,
            margin_seconds=config.token_refresh_margin_seconds,
            shared=shared_tokens.current(),
        )
        self._retrying = stamina.RetryingCaller(
            attempts=config.rate_limit_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=config.max_rate_limit_wait_seconds,
            wait_jitter=0.5,
        )

    def __repr__(self) -> str:
        return f"HaloClient(root={self._root!r})"

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        json_body: object = None,
        rejected: type[PermanentError] = PermanentError,
    ) -> httpx.Response:
        """One API call; a 429 is retried briefly (honouring a short Retry-After)."""
        return self._retrying(
            self._rate_limited, self._once, method, path, what, params, json_body, rejected
        )

    def get_list(
        self, path: str, key: str, *, what: str, params: Params | None = None
    ) -> list[JSON]:
        """A lookup list (most are plain arrays, some wrapped), read in one call."""
        response = self.call("GET", path, params=params, what=what)
        return rows(json_of(response, what), key)[0]

    def get_all(self, path: str, key: str, *, what: str, params: Params) -> Iterator[JSON]:
        """The records of a paged list (``pageinate``, ``page_size``, ``page_no``), read page by
        page as they are consumed."""
        seen = 0
        for page in range(1, 10_001):
            query = {**params, "pageinate": "true", "page_size": self._page_size, "page_no": page}
            response = self.call("GET", path, params=query, what=what)
            found, total = rows(json_of(response, what), key)
            yield from found
            seen += len(found)
            if total is None or not found or seen >= total:
                return

    def _rate_limited(self, exc: Exception) -> bool | float:
        """stamina's hook: only 429s are retried here; 5xx and long waits go to the scheduler."""
        if not isinstance(exc, RateLimited):
            return False
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= self._max_wait else False

    def _once(
        self,
        method: str,
        path: str,
        what: str,
        params: Params | None,
        json_body: object,
        rejected: type[PermanentError],
    ) -> httpx.Response:
        """One request with the shared token; a 401 renews the token and tries once more (twice
        when the first replacement was another thread's or process's, not issued for this call)."""
        token = self.tokens.current()
        response = self._send(method, path, token, params, json_body)
        if response.status_code == 401:
            token, issued = self.tokens.replace(token)
            response = self._send(method, path, token, params, json_body)
            if response.status_code == 401 and not issued:
                token = self.tokens.replace(token)[0]
                response = self._send(method, path, token, params, json_body)
        raise_for(response, what, rejected=rejected, scrub=self._scrub)
        return response

    def _send(
        self, method: str, path: str, token: str, params: Params | None, json_body: object
    ) -> httpx.Response:
        return send(
            self._http,
            self.limits,
            method,
            f"{self._root}/{path}",
            endpoint=endpoint_of(method, path),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            params=params,
            json_body=json_body,
            unanswered=f"HaloPSA did not answer {method} /api/{path}",
        )
