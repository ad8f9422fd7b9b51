"""A fake OpenID Connect provider on 127.0.0.1, shaped like Microsoft Entra ID's v2.0 endpoints.

It publishes a discovery document and its JWKS, and runs the authorization code flow with PKCE:
``/authorize`` signs in ``person`` at once (no login page) and sends the browser back to the
client's ``redirect_uri`` with a code; ``/token`` checks the client's credentials (Basic or in the
form), the code (once), the redirect URI and the PKCE verifier (S256), and answers an RS256 ID
token carrying the nonce. ``tamper`` makes the next ID tokens wrong in one way, to test that the
client refuses them: ``signature``, ``audience``, ``issuer``, ``nonce``, ``expired``, ``key``
(signed with a key the JWKS does not publish) or ``alg_none``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import FakeServer, Request, Response

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-oidc-client-secret"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


class FakeOidc(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.clients = {CLIENT_ID: CLIENT_SECRET}
        self.person: dict[str, Any] = {
            "preferred_username": "Alex@Contoso.example",
            "name": "Alex Example",
            "roles": ["psatriage.reviewer"],
        }
        self.tamper: set[str] = set()
        self.auth_methods = ["client_secret_post", "client_secret_basic"]
        self.kid = "key-1"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._grants: dict[str, _Grant] = {}
        self.token_requests: list[dict[str, str]] = []
        self.route("GET", r"/v2\.0/\.well-known/openid-configuration", self._discovery)
        self.route("GET", r"/keys", self._jwks)
        self.route("GET", r"/authorize", self._authorize)
        self.route("POST", r"/token", self._token)

    @property
    def issuer(self) -> str:
        return f"{self.url}/v2.0"

    def _discovery(self, request: Request) -> Response:
        return Response(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/keys",
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": self.auth_methods,
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email"],
            },
        )

    def _jwks(self, request: Request) -> Response:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return Response(200, {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    def rotate_key(self) -> None:
        """A new signing key under a new key id (the old one is no longer published)."""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"key-{secrets.token_hex(4)}"

    def _authorize(self, request: Request) -> Response:
        query = {key: values[0] for key, values in request.query.items()}
        client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
        if client_id not in self.clients or not redirect_uri.startswith("http://127.0.0.1"):
            return Response(400, {"error": "unauthorized_client"})
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return Response(400, {"error": "invalid_request"})
        if "openid" not in query.get("scope", "").split():
            return Response(400, {"error": "invalid_scope"})
        code = secrets.token_urlsafe(16)
        nonce, challenge = query.get("nonce", ""), query.get("code_challenge", "")
        self._grants[code] = _Grant(client_id, redirect_uri, challenge, nonce, dict(self.person))
        target = redirect_uri + "?" + urlencode({"code": code, "state": query.get("state", "")})
        return Response(302, None, {"Location": target})

    def _token(self, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        self.token_requests.append(form)
        client_id, secret = self._client_credentials(request, form)
        if self.clients.get(client_id) != secret:
            return Response(401, {"error": "invalid_client"})
        grant = self._grants.pop(form.get("code", ""), None)
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
        ):
            return Response(400, {"error": "invalid_grant"})
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if challenge.rstrip(b"=").decode() != grant.challenge:
            return Response(400, {"error": "invalid_grant", "error_description": "PKCE failed"})
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "access_token": secrets.token_urlsafe(24),
                "id_token": self._id_token(grant),
            },
        )

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(user), unquote(password)
        return form.get("client_id", ""), form.get("client_secret", "")

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": "sub-" + hashlib.sha256(str(grant.claims).encode()).hexdigest()[:16],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "nonce": grant.nonce,
            "tid": "00000000-0000-0000-0000-0000000000aa",
            **grant.claims,
        }
        if "audience" in self.tamper:
            claims["aud"] = "another-client"
        if "issuer" in self.tamper:
            claims["iss"] = "https://login.example/other/v2.0"
        if "nonce" in self.tamper:
            claims["nonce"] = "not-the-nonce"
        if "expired" in self.tamper:
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        if "alg_none" in self.tamper:
            return jwt.encode(claims, key=None, algorithm="none")
        key = self._other if "key" in self.tamper or "signature" in self.tamper else self._key
        kid = self.kid if "key" not in self.tamper else "unpublished"
        return jwt.encode(claims, key=key, algorithm="RS256", headers={"kid": kid})
