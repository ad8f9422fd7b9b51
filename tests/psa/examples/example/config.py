"""The ``[tenants.X.connection]`` table of an Example PSA tenant."""

from __future__ import annotations

from pydantic import Field, field_validator

from psatriage.psa.base import AdapterConfig, CallLimitsConfig, origin_url
from psatriage.secrets import Secret


class ExampleConfig(AdapterConfig, CallLimitsConfig):
    """The ``[tenants.X.connection]`` table of an Example PSA tenant."""

    url: str = Field(description="Origin of the Example PSA, e.g. 'https://acme.example-psa.com'.")
    api_key: Secret = Field(description="The API key (env:NAME or file:PATH).")
    webhook_secret: Secret = Field(description="Secret that signs webhook deliveries.")
    page_size: int = Field(default=50, ge=1, le=100, description="Records per page (1-100).")

    @field_validator("url")
    @classmethod
    def _origin(cls, value: str) -> str:
        return origin_url(value, example="https://acme.example-psa.com")
