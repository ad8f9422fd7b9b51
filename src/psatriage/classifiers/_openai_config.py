"""The settings of the OpenAI-compatible classifier, and what a call costs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from psatriage.classifiers.base import ClassifierConfig
from psatriage.secrets import Secret

if TYPE_CHECKING:
    import openai

_NO_KEY: Final = "no-key"  # compatible servers without auth; never the OPENAI_API_KEY env var
StructuredOutput = Literal["json_schema", "json_object_schema", "json_object"]


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")


# Public list prices (USD per million tokens) at the time of writing. They are estimates for the
# cost column of the audit trail, not a bill: override them per tenant with ``prices``.
DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    "gpt-4o-mini": Price(input=0.15, output=0.60),
    "gpt-4o": Price(input=2.50, output=10.00),
    "gpt-4.1": Price(input=2.00, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, output=0.40),
    "o4-mini": Price(input=1.10, output=4.40),
}


class OpenAIConfig(ClassifierConfig):
    """An OpenAI, Azure OpenAI or OpenAI-compatible endpoint."""

    provider: Literal["openai", "azure", "compatible"] = Field(
        default="openai",
        description="Who serves the model: 'openai', 'azure' (Azure OpenAI) or 'compatible' "
        "(any server speaking the OpenAI API: llama.cpp, Ollama, vLLM, LM Studio...; the "
        "settings each needs are in [models.md](models.md)).",
    )
    model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        description="The model to ask. With Azure it is what is logged and priced; the URL uses "
        "azure_deployment (the v1 path and a missing azure_deployment use model as deployment).",
    )
    api_key: Secret | None = Field(
        default=None,
        description="The API key. Required for openai and azure, optional for compatible servers.",
    )
    base_url: str | None = Field(
        default=None,
        description="API root, e.g. 'http://localhost:11434/v1' for Ollama. Required for "
        "compatible servers; for openai only to go through a proxy.",
    )
    azure_endpoint: str | None = Field(
        default=None,
        description="Azure: the resource endpoint, e.g. 'https://contoso.openai.azure.com'.",
    )
    azure_deployment: str | None = Field(
        default=None, description="Azure: the deployment name used in the URL."
    )
    api_version: str | None = Field(
        default=None,
        description="Azure: the api-version of the deployments path, e.g. '2024-10-21'. Leave "
        "unset to use the v1 API ({azure_endpoint}/openai/v1/).",
    )
    max_tokens: int = Field(default=300, ge=1, description="Default answer budget in tokens.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one HTTP call.")
    logprobs: bool = Field(
        default=True,
        description="Ask for token log-probabilities to measure confidence (with top_logprobs "
        "where the server returns none without it). Turned off automatically for servers that "
        "refuse them; the model's own estimate is used then.",
    )
    structured_output: Literal["auto", "json_schema", "json_object_schema", "json_object"] = Field(
        default="auto",
        description="How the answer's shape is enforced: 'json_schema' (strict schema, the "
        "category an enum of the candidates: OpenAI, Azure, vLLM, Ollama, LM Studio), "
        "'json_object_schema' (JSON mode carrying the schema: llama.cpp's llama-cpp-python "
        "server), 'json_object' (JSON mode, the keys in the prompt), or 'auto': the best "
        "one the server supports, found by a probe on first use (see [models.md](models.md)). "
        "Answers are checked by psatriage in every mode.",
    )
    cost: Literal["prices", "free"] = Field(
        default="prices",
        description="'prices': each call costs what prices (or the shipped estimates for "
        "OpenAI models) say, and a model without a price is reported as unpriced; 'free': a "
        "server you run yourself, every call costs 0 on purpose.",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million tokens per model, {input, output}; merged over the "
        "shipped estimates for OpenAI models.",
    )
    inner_retries: int = Field(
        default=2,
        ge=0,
        description="Retries of a timeout, 429 or 5xx inside one classification before the job "
        "is rescheduled.",
    )
    max_inner_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Longest wait between inner retries; a longer Retry-After reschedules the job.",
    )

    @model_validator(mode="after")
    def _check_provider(self) -> OpenAIConfig:
        if self.provider in {"openai", "azure"} and self.api_key is None:
            raise ValueError(
                f"provider {self.provider!r} needs api_key: write it as 'env:NAME' or 'file:PATH'"
            )
        if self.provider == "azure" and not self.azure_endpoint:
            raise ValueError(
                "provider 'azure' needs azure_endpoint, e.g. 'https://contoso.openai.azure.com'"
            )
        if self.provider == "compatible" and not self.base_url:
            raise ValueError(
                "provider 'compatible' needs base_url, e.g. 'http://localhost:11434/v1' (Ollama)"
            )
        azure_only = [
            name
            for name in ("azure_endpoint", "azure_deployment", "api_version")
            if getattr(self, name) is not None
        ]
        if self.provider != "azure" and azure_only:
            raise ValueError(f"{', '.join(azure_only)} only apply to provider 'azure'")
        return self

    @property
    def default_model(self) -> str:
        return self.model

    @property
    def default_max_tokens(self) -> int:
        return self.max_tokens

    @property
    def server(self) -> str:
        """Where the model is served, for messages: the API root without credentials or query."""
        where = {
            "openai": self.base_url or "https://api.openai.com/v1",
            "azure": self.azure_endpoint or "",
            "compatible": self.base_url or "",
        }[self.provider]
        parts = urlsplit(where)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", "")) or where


def price_for(prices: Mapping[str, Price], model: str) -> Price | None:
    """The model's price; a dated snapshot ("gpt-4o-mini-2024-07-18") takes its family's."""
    price = prices.get(model)
    if price is None:
        family = max((name for name in prices if model.startswith(f"{name}-")), key=len, default="")
        price = prices.get(family)
    return price


def cost_basis(config: OpenAIConfig, model: str) -> str:
    """How calls to ``model`` are priced, in words (for ``config check`` and ``eval``)."""
    if config.cost == "free":
        return 'free (cost = "free")'
    price = price_for({**DEFAULT_PRICES, **config.prices}, model)
    if price is None:
        return (
            f'unpriced: no price for {model!r}; set prices."{model}" = {{input, output}}, or '
            'cost = "free" for a server you run yourself'
        )
    return f"${price.input:g} in / ${price.output:g} out per million tokens"


def make_client(config: OpenAIConfig) -> openai.OpenAI:
    """The SDK client for this provider; retries are ours (``max_retries=0``), its HTTP client
    ours too (``_openai_http``: no cookies, the lean transport)."""
    import openai

    from psatriage.classifiers._openai_http import make_http_client

    key = config.api_key.get_secret_value() if config.api_key else _NO_KEY
    if config.provider == "azure":
        assert config.azure_endpoint is not None  # checked by OpenAIConfig
        if config.api_version:
            return openai.AzureOpenAI(
                azure_endpoint=config.azure_endpoint,
                azure_deployment=config.azure_deployment,
                api_version=config.api_version,
                api_key=key,
                timeout=config.timeout_seconds,
                max_retries=0,
                http_client=make_http_client(),
            )
        base_url = f"{config.azure_endpoint.rstrip('/')}/openai/v1/"
    else:
        base_url = config.base_url or "https://api.openai.com/v1"
    return openai.OpenAI(
        api_key=key,
        base_url=base_url,
        timeout=config.timeout_seconds,
        max_retries=0,
        http_client=make_http_client(),
    )
