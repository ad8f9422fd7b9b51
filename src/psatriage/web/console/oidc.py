"""Single sign-on with OpenID Connect: authorization code flow with PKCE (S256).

Works with Microsoft Entra ID and any provider that publishes a discovery document:

1. ``begin`` makes the state, nonce and PKCE verifier (kept in the browser's pre-sign-in session,
   server side) and the provider's authorization URL.
2. The provider sends the browser back with ``code`` and ``state``; ``finish`` checks the state,
   exchanges the code (with the verifier and the client's credentials) at the token endpoint and
   validates the ID token: signature against the provider's JWKS (fetched again once when a key
   id is new: keys rotate), algorithm, issuer, audience, authorized party, expiry, nonce.

Nothing from the provider is trusted before that; tokens are never logged or stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt

from psatriage.errors import PsatriageError
from psatriage.web.console.settings import ConsoleSettings

_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
_METADATA_SECONDS = 3600.0
_JWKS_REFRESH_SECONDS = 60.0


class SignInFailed(PsatriageError):
    """Single sign-on did not prove who the person is; the message says why, for the page."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcClient:
    """One provider, as configured in ``ConsoleSettings``."""

    def __init__(self, settings: ConsoleSettings, http: httpx.Client) -> None:
        self.settings = settings
        self._http = http
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: jwt.PyJWKSet | None = None
        self._missed_at = float("-inf")

    # -- the two steps ------------------------------------------------------------------------

    def begin(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL, and what ``finish`` must check afterwards."""
        verifier = secrets.token_urlsafe(48)
        pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24)}
        query = {
            "response_type": "code",
            "client_id": self.settings.oidc_client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.oidc_scopes,
            "state": pending["state"],
            "nonce": pending["nonce"],
            "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        endpoint = str(self.metadata()["authorization_endpoint"])
        joiner = "&" if "?" in endpoint else "?"
        return endpoint + joiner + urlencode(query), {**pending, "verifier": verifier}

    def finish(
        self, *, code: str, state: str, redirect_uri: str, pending: dict[str, str]
    ) -> dict[str, Any]:
        """The validated claims of the ID token for ``code``; ``SignInFailed`` otherwise."""
        if not pending.get("state") or not hmac.compare_digest(state, pending["state"]):
            raise SignInFailed("the sign-in answer does not match this browser's sign-in; retry")
        token = self._exchange(code, redirect_uri, pending["verifier"])
        return self._validate(token, pending["nonce"])

    # -- provider documents -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for an hour)."""
        with self._lock:
            fresh = time.monotonic() - self._metadata_at < _METADATA_SECONDS
            if self._metadata is not None and fresh:
                return self._metadata
        issuer = self.settings.oidc_issuer
        document = self._get_json(f"{issuer}/.well-known/openid-configuration", "discovery")
        if document.get("issuer") != issuer:
            raise SignInFailed(
                f"the provider names itself {document.get('issuer')!r}, not {issuer!r}; fix "
                "PSATRIAGE_OIDC_ISSUER (copy the issuer from the provider's discovery document)"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(key), str):
                raise SignInFailed(f"the provider's discovery document has no {key}")
        with self._lock:
            self._metadata, self._metadata_at = document, time.monotonic()
        return document

    def _signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The provider's key ``kid``; the JWKS is read again when a key id is new (providers
        rotate keys), at most once a minute for such misses."""
        for refresh in (False, True):
            with self._lock:
                due = time.monotonic() - self._missed_at > _JWKS_REFRESH_SECONDS
                fetch = self._keys is None or (refresh and due)
                if refresh and fetch:
                    self._missed_at = time.monotonic()
            if fetch:
                fetched = jwt.PyJWKSet.from_dict(
                    self._get_json(str(self.metadata()["jwks_uri"]), "signing keys")
                )
                with self._lock:
                    self._keys = fetched
            with self._lock:
                keys = self._keys.keys if self._keys is not None else []
            found = [k for k in keys if kid is None or k.key_id == kid]
            if (kid is None and len(found) == 1) or (kid is not None and found):
                return found[0]
        raise SignInFailed("the ID token is signed with a key the provider does not publish")

    # -- token --------------------------------------------------------------------------------

    def _exchange(self, code: str, redirect_uri: str, verifier: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.settings.oidc_client_id,
        }
        auth = httpx.Auth()  # none: a public client, or the secret in the form
        secret = self.settings.oidc_client_secret
        if secret is not None:
            methods = self.metadata().get("token_endpoint_auth_methods_supported") or [
                "client_secret_basic"
            ]
            if "client_secret_basic" in methods:  # RFC 6749 2.3.1: both parts form-encoded
                auth = httpx.BasicAuth(
                    quote(self.settings.oidc_client_id), quote(secret.get_secret_value())
                )
            else:
                form["client_secret"] = secret.get_secret_value()
        try:
            response = self._http.post(
                str(self.metadata()["token_endpoint"]), data=form, auth=auth, timeout=15
            )
        except httpx.HTTPError as exc:
            raise SignInFailed(f"the provider did not answer: {type(exc).__name__}") from None
        body = _json_or_empty(response)
        if response.status_code != 200:
            error = body.get("error") or f"HTTP {response.status_code}"
            raise SignInFailed(f"the provider refused the sign-in code ({error})")
        token = body.get("id_token")
        if not isinstance(token, str):
            raise SignInFailed("the provider answered without an ID token (is 'openid' a scope?)")
        return token

    def _validate(self, token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise SignInFailed("the ID token is not a JWT") from None
        allowed = set(self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"])
        algorithm = str(header.get("alg"))
        if algorithm not in allowed & _ASYMMETRIC:
            raise SignInFailed(f"the ID token's algorithm {algorithm!r} is not accepted")
        key = self._signing_key(header.get("kid"))
        client_id = self.settings.oidc_client_id
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=client_id,
                issuer=self.settings.oidc_issuer,
                leeway=60,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SignInFailed(f"the ID token is not valid: {exc}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != client_id:
            raise SignInFailed("the ID token was issued to another client (azp)")
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInFailed("the ID token's nonce does not match this sign-in; retry")
        return claims

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, timeout=15)
        except httpx.HTTPError as exc:
            raise SignInFailed(
                f"the provider's {what} could not be read: {type(exc).__name__}"
            ) from None
        body = _json_or_empty(response)
        if response.status_code != 200 or not body:
            status = response.status_code
            raise SignInFailed(f"the provider's {what} could not be read (HTTP {status})")
        return body


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
