"""The HTTP side of the Kaseya BMS adapter: tokens, the call limiter, envelopes and paging.

One ``BMSClient`` per adapter (per tenant and process), shared by its threads: one token cache
(one login or refresh at a time) and one ``CallLimits`` counting calls per endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import structlog

from psatriage.errors import AuthFailed, PermanentError, TransientError
from psatriage.limits import CallLimits
from psatriage.psa._kaseya_bms_config import KaseyaBMSConfig
from psatriage.psa._kaseya_bms_wire import Token, TokenCache, read_result, unauthorized
from psatriage.psa._wire import lower_keys as ci

log = structlog.get_logger(__name__)

_JSON = dict[str, Any]
MAX_PAGES = 10_000


class BMSClient:
    """Authenticated calls to ``{origin}/v2/...``; every answer is read through ``read_result``."""

    def __init__(self, tenant: str, config: KaseyaBMSConfig, http: httpx.Client) -> None:
        self.tenant, self.config, self.http = tenant, config, http
        self.limits = CallLimits(
            per_window=config.calls_per_hour,
            window_seconds=config.rate_window_seconds,
            per_endpoint=True,
            scope=f"kaseya_bms:{tenant}",
        )
        self.tokens = TokenCache(self._login)

    def __repr__(self) -> str:
        return f"BMSClient(tenant={self.tenant!r})"

    # -- tokens -----------------------------------------------------------------------------

    def _login(self, previous: Token | None) -> Token:
        """A new token: the refresh token when it still works, else the password grant."""
        if previous is not None and self.tokens.refresh_usable(previous):
            form = {"AccessToken": previous.access, "RefreshToken": previous.refresh}
            try:
                return self._token_call("security/refreshtoken", form, "the token refresh")
            except AuthFailed:
                log.info("BMS token refresh refused; logging in again", tenant=self.tenant)
        form = {
            "GrantType": "password",
            "UserName": self.config.username,
            "Password": self.config.password.get_secret_value(),
            "Tenant": self.config.company,
        }
        return self._token_call("security/authenticate", form, "the login")

    def _token_call(self, path: str, form: Mapping[str, str], what: str) -> Token:
        response = self.send("POST", path, data=form)
        try:
            result = read_result(response, what)
        except PermanentError as exc:  # a refused login may come as any 4xx or Success: false
            raise AuthFailed(str(exc)) from exc
        return Token.from_result(result, self.config.zone, self.tokens.now())

    # -- calls ------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: object = None,
        data: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """One request, counted by the limiter; transport failures are transient."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        endpoint = f"{method} /v2/{endpoint_of(path)}"
        with self.limits.call(endpoint):
            try:
                return self.http.request(
                    method,
                    f"{self.config.origin}/v2/{path}",
                    params=params,
                    json=json_body,
                    data=data,
                    headers=headers,
                    follow_redirects=False,
                )
            except httpx.TransportError as exc:
                raise TransientError(
                    f"Kaseya BMS did not answer {endpoint}: {type(exc).__name__}"
                ) from exc

    def exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: object = None,
    ) -> httpx.Response:
        """One authenticated call; a refused token is refreshed and the call made once more."""
        token = self.tokens.access()
        response = self.send(method, path, params=params, json_body=json_body, token=token)
        if unauthorized(response):
            self.tokens.expire(token)
            token = self.tokens.access()
            response = self.send(method, path, params=params, json_body=json_body, token=token)
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json_body: object = None,
        rejected: type[PermanentError] = PermanentError,
    ) -> Any:
        """One API call's ``Result`` (see ``read_result`` for how failures are mapped)."""
        response = self.exchange(method, path, params=params, json_body=json_body)
        return read_result(response, what, rejected=rejected)

    def lookup(self, path: str, what: str) -> list[_JSON]:
        """A lookup list (not paged), records with lower-case keys."""
        result = self.call("GET", path, what=what)
        if not isinstance(result, list):
            raise PermanentError(f"Kaseya BMS answered {what} with no list")
        return [ci(record) for record in result if isinstance(record, Mapping)]

    def paged(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        method: str = "GET",
    ) -> Iterator[_JSON]:
        """Every record of a paged list (``PageSize``/``PageNumber`` from 1), page by page.

        Stops at an empty page, at ``TotalRecords``, or at a page with nothing new (a server
        that ignores ``PageNumber``). A short page is not taken as the end: BMS may cap the page
        size below ours [UNSURE], and a public client reads until an empty page.
        """
        seen: set[str] = set()
        count, total = 0, None
        for page in range(1, MAX_PAGES + 1):
            paging = {"PageSize": self.config.page_size, "PageNumber": page}
            if method == "GET":
                response = self.exchange(method, path, params={**(params or {}), **paging})
            else:
                response = self.exchange(method, path, json_body=paging)
            records = read_result(response, what)
            if not isinstance(records, list):
                raise PermanentError(f"Kaseya BMS answered {what} with no list")
            stated = ci(_json_or_none(response)).get("totalrecords")
            if isinstance(stated, int) and not isinstance(stated, bool):
                total = stated
            fresh = [ci(r) for r in records if isinstance(r, Mapping)]
            fresh = [r for r in fresh if _fingerprint(r) not in seen]
            seen.update(_fingerprint(r) for r in fresh)
            yield from fresh
            count += len(records)
            if not fresh or (total is not None and count >= total):
                return


def endpoint_of(path: str) -> str:
    """The path with ids as ``{id}``: BMS counts its limit per endpoint, not per record."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def _fingerprint(record: Mapping[str, Any]) -> str:
    return str(record.get("id")) if record.get("id") is not None else repr(sorted(record.items()))


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
