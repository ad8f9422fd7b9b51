"""Kaseya BMS over HTTP: the token, the envelope, lookups and numbered pages.

Calls go to ``{origin}/v2/...`` with a bearer token from ``POST /v2/security/authenticate``
(password grant), renewed through ``/v2/security/refreshtoken`` while its refresh token works: one
``TokenCache`` per tenant, shared by the worker threads and, where the Runtime shares tokens, by
every worker process. Every answer is the envelope ``{"Success", "Error", "Result"}``, checked
even on HTTP 200 (``raise_for``). BMS counts calls per endpoint (1,500 an hour): the tenant's
``CallLimits`` count the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import httpx
import structlog

from psatriage.errors import AuthFailed, PermanentError, PsatriageError
from psatriage.psa.client import Failure, Form, Params, PSAClient, endpoint_of
from psatriage.psa.kaseya_bms.config import KaseyaBMSConfig
from psatriage.psa.kaseya_bms.wire import (
    envelope,
    error_code,
    error_detail,
    token_from,
    unauthorized,
)
from psatriage.psa.paging import numbered
from psatriage.psa.tokens import Token, TokenCache, cache_name, with_token
from psatriage.psa.wire import JSON, lower_keys
from psatriage.shared import tokens as shared_tokens

log = structlog.get_logger(__name__)


class BMSClient(PSAClient):
    """Authenticated calls to ``{origin}/v2/...``; every answer is checked by ``raise_for``."""

    psa: ClassVar[str] = "Kaseya BMS"
    principal: ClassVar[str] = "the API user"
    rejected_statuses: ClassVar[range] = range(400, 500)  # BMS documents no status codes

    def __init__(self, tenant: str, config: KaseyaBMSConfig, http: httpx.Client) -> None:
        super().__init__(
            http,
            config.call_limits(f"kaseya_bms:{tenant}"),
            config,
            scrub=(config.password.get_secret_value(),),
        )
        self.tenant, self.config = tenant, config
        login = (config.origin, config.username, config.company)
        self.tokens = TokenCache(
            cache_name("kaseya_bms", *login), self._login, shared=shared_tokens.current()
        )

    def __repr__(self) -> str:
        return f"BMSClient(tenant={self.tenant!r})"

    # -- calls ------------------------------------------------------------------------------------

    def exchange(
        self, method: str, path: str, *, params: Params | None, json_body: object, data: Form | None
    ) -> httpx.Response:
        """One authenticated call; a refused token is renewed (see ``with_token``)."""
        return with_token(
            self.tokens,
            lambda token: self._send(method, path, params=params, json_body=json_body, token=token),
            unauthorized,
        )

    def result(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """One API call's ``Result``."""
        return envelope(self.call(method, path, what=what, **kwargs)).get("result")

    def lookup(self, path: str, what: str) -> list[JSON]:
        """A lookup list (not paged), records with lower-case keys."""
        return self._records(self.result("GET", path, what=what), what)

    def paged(
        self,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        method: str = "GET",
    ) -> Iterator[JSON]:
        """Every record of a paged list (``PageSize``/``PageNumber`` from 1), page by page, with
        lower-case keys; a POST search takes the paging in its body [UNSURE]. A short page is
        not the end: BMS may cap the page size below ours [UNSURE], and a public client reads
        until an empty page."""

        def page(number: int) -> tuple[list[JSON], int | None]:
            paging = {"PageSize": self.config.page_size, "PageNumber": number}
            if method == "GET":
                response = self.call(method, path, params={**(params or {}), **paging}, what=what)
            else:
                response = self.call(method, path, json_body=paging, what=what)
            found = envelope(response)
            total = found.get("totalrecords")
            stated = total if isinstance(total, int) and not isinstance(total, bool) else None
            return self._records(found.get("result"), what), stated

        return numbered(page)

    # -- the envelope -----------------------------------------------------------------------------

    def failure(
        self, response: httpx.Response, what: str, rejected: type[PermanentError]
    ) -> Failure | None:
        """The HTTP status, then the envelope (checked even on HTTP 200).

        [UNSURE] BMS's HTTP status codes on errors are not documented (its spec lists only 200),
        so an error inside a 200 is mapped by its ``Error.Code`` when that is an HTTP-like code,
        else (status 0) the request was refused (``quirk``).
        """
        found = envelope(response)
        detail = self.scrubbed(error_detail(found))
        if response.status_code >= 300:
            return Failure(response.status_code, response, what, detail, rejected)
        if "success" not in found:
            raise PermanentError(f"Kaseya BMS answered {what} without its Success/Result envelope")
        if found["success"] is True:
            return None
        code = error_code(found)
        return Failure(
            code if code >= 300 else 0, response, what, detail or ": Success is false", rejected
        )

    def quirk(self, failure: Failure) -> PsatriageError | None:
        if failure.status == 0:
            return failure.rejected(f"Kaseya BMS refused {failure.what}{failure.detail}")
        return None

    # -- internals --------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: object = None,
        data: Form | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.send(
            method,
            f"{self.config.origin}/v2/{path}",
            endpoint=endpoint_of(method, f"v2/{path}"),
            headers=headers,
            params=params,
            json_body=json_body,
            data=data,
        )

    def _records(self, result: object, what: str) -> list[JSON]:
        if not isinstance(result, list):
            raise PermanentError(f"Kaseya BMS answered {what} with no list")
        return [lower_keys(record) for record in result if isinstance(record, Mapping)]

    def _login(self, previous: Token | None) -> Token:
        """A new token: the refresh token while it still works, else the password grant."""
        if previous is not None and self._refresh_usable(previous):
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

    def _token_call(self, path: str, form: Form, what: str) -> Token:
        response = self._send("POST", path, data=form)
        try:
            self.raise_for(response, what)
        except PermanentError as exc:  # a refused login may come as any 4xx or Success: false
            raise AuthFailed(str(exc)) from exc
        return token_from(envelope(response).get("result"), self.config.zone, self.tokens.now())

    def _refresh_usable(self, token: Token) -> bool:
        if not token.refresh:
            return False
        return token.refresh_until is None or self.tokens.now() < token.refresh_until
