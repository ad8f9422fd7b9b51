"""Settings of the web console, from ``PSATRIAGE_*`` environment variables: single sign-on,
sessions and the sign-in rate limit. Local users are not settings: ``psatriage users add``."""

from __future__ import annotations

from datetime import timedelta

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from psatriage.store.users import Lifetimes, Role

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ConsoleSettings(BaseSettings):
    """How people sign in to the console and how long they stay signed in."""

    model_config = SettingsConfigDict(env_prefix="PSATRIAGE_", extra="ignore")

    oidc_issuer: str = Field(
        default="",
        description="Issuer of the OpenID Connect provider for single sign-on, e.g. "
        "https://login.microsoftonline.com/TENANT-ID/v2.0 for Microsoft Entra ID; its "
        "/.well-known/openid-configuration is read. Unset: local users only.",
    )
    oidc_client_id: str = Field(default="", description="Client (application) id at the provider.")
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="Client secret at the provider (unset: a public client, PKCE only).",
    )
    oidc_scopes: str = Field(default="openid profile email", description="Scopes asked for.")
    oidc_display_name: str = Field(
        default="single sign-on",
        description="Shown on the sign-in button ('Sign in with ...'), e.g. Microsoft.",
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        description="ID-token claim that names the person (then email, then sub).",
    )
    oidc_roles_claim: str = Field(
        default="roles",
        description="ID-token claim listing roles (Entra ID app roles): admin, reviewer or "
        "viewer, optionally after a prefix and a dot (psatriage.admin). Without one, a local "
        "user of the same name gives the role, else oidc_default_role.",
    )
    oidc_default_role: Role | None = Field(
        default=None,
        description="Role of a person the provider signed in who has no role otherwise; "
        "unset: such a person is refused.",
    )
    public_url: str = Field(
        default="",
        description="The console's address as browsers reach it, e.g. https://triage.example.com; "
        "the single sign-on redirect URI is {public_url}/login/oidc/callback. Unset: taken from "
        "each request (behind a proxy, let it send X-Forwarded-Proto and Host).",
    )
    session_hours: float = Field(
        default=12, gt=0, le=24 * 30, description="A console session ends this long after sign-in."
    )
    session_idle_minutes: float = Field(
        default=60,
        gt=0,
        description="A console session also ends this long after its last request.",
    )
    sign_in_attempts: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins allowed per user name in sign_in_window_minutes (four "
        "times as many from one address); past that, sign-in is refused until the window passes.",
    )
    sign_in_window_minutes: float = Field(
        default=15, gt=0, description="The window sign_in_attempts are counted in."
    )
    health_seconds: float = Field(
        default=60,
        gt=0,
        description="How long the console reuses a tenant's PSA and model connection check.",
    )

    @field_validator("oidc_issuer", "public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        url = httpx.URL(value)
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError(f"{value!r} is not a URL; write it as https://host[/path]")
        if url.scheme == "http" and url.host not in _LOOPBACK:
            raise ValueError(f"{value!r} must use https (plain http only on this machine)")
        return value

    @model_validator(mode="after")
    def _client_id_with_issuer(self) -> ConsoleSettings:
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError(
                "PSATRIAGE_OIDC_ISSUER is set without PSATRIAGE_OIDC_CLIENT_ID; set both"
            )
        return self

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def lifetimes(self) -> Lifetimes:
        return Lifetimes(
            absolute=timedelta(hours=self.session_hours),
            idle=timedelta(minutes=self.session_idle_minutes),
        )

    @property
    def sign_in_window(self) -> timedelta:
        return timedelta(minutes=self.sign_in_window_minutes)
