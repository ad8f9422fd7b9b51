"""The ``[tenants.NAME.connection]`` table of a ConnectWise tenant."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
from pydantic import BeforeValidator, Field, field_validator, model_validator

from psatriage.psa.base import AdapterConfig, CallLimitsConfig, origin_url
from psatriage.psa.wire import origin_of
from psatriage.secrets import Secret

_CODEBASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/$")


def _as_strings(value: object) -> object:
    """TOML may give board ids as integers; keep them as strings."""
    if isinstance(value, list | tuple):
        return tuple(str(v) if isinstance(v, int) else v for v in value)
    return value


class ConnectWiseConfig(AdapterConfig, CallLimitsConfig):
    """The ``[tenants.X.connection]`` table of a ConnectWise tenant."""

    site: str | None = Field(
        default=None,
        description="API host of the cloud instance, e.g. 'api-na.myconnectwise.net'; not "
        "needed on premise, where base_url names the server.",
    )
    company_id: str = Field(description="Company id used to log in to ConnectWise.")
    public_key: Secret = Field(description="The API member's public key (env:NAME or file:PATH).")
    private_key: Secret = Field(description="The API member's private key (env:NAME or file:PATH).")
    client_id: str = Field(description="clientId GUID issued at developer.connectwise.com.")
    base_url: str | None = Field(
        default=None,
        description="Full origin overriding https://{site} (on-premise servers, tests), "
        "e.g. 'https://cw.example.com'.",
    )
    codebase: str | None = Field(
        default=None,
        description="API codebase such as 'v2025_1/'; discovered from companyinfo when unset.",
    )
    trusted_key_origins: tuple[str, ...] = Field(
        default=(),
        description="Extra origins (scheme://host[:port]) allowed to serve callback signing keys, "
        "for on-premise servers. Cloud hosts (*.myconnectwise.net over HTTPS) are always allowed.",
    )
    boards: Annotated[tuple[str, ...], BeforeValidator(_as_strings)] = Field(
        default=(),
        description="Service board ids or names to categorize; empty means every service board.",
    )
    page_size: int = Field(default=1000, ge=1, le=1000, description="Records per page (1-1000).")
    api_version: str | None = Field(
        default=None,
        description="Pin the API response version (Accept header), e.g. '2025.1'.",
    )

    @field_validator("site")
    @classmethod
    def _bare_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?", value):
            raise ValueError("give the host only, e.g. 'api-na.myconnectwise.net' (no scheme)")
        return value.lower()

    @model_validator(mode="after")
    def _a_server(self) -> ConnectWiseConfig:
        if self.site is None and self.base_url is None:
            raise ValueError(
                "give site (the cloud API host, e.g. 'api-na.myconnectwise.net') or base_url "
                "(an on-premise server's origin, e.g. 'https://cw.example.com')"
            )
        return self

    @property
    def origin(self) -> str:
        """Where the API answers: ``base_url``, else ``https://{site}``."""
        return self.base_url or f"https://{self.site}"

    @field_validator("base_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        return None if value is None else origin_url(value, example="https://cw.example.com")

    @field_validator("codebase")
    @classmethod
    def _codebase_form(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip("/") + "/"
        if not _CODEBASE.match(value):
            raise ValueError("must look like 'v2025_1/'")
        return value

    @field_validator("trusted_key_origins")
    @classmethod
    def _origins(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            origin_of(httpx.URL(origin_url(value, example="https://cw.example.com")))
            for value in values
        )
