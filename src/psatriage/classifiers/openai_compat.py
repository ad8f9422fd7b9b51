"""OpenAI, Azure OpenAI and OpenAI-compatible servers: one classifier, three configurations.

All three speak the Chat Completions wire format; they differ only in how the client is built:

``provider = "openai"``
    ``openai.OpenAI(api_key=...)``; ``base_url`` only for a proxy or gateway.
``provider = "azure"`` with ``api_version``
    ``openai.AzureOpenAI(azure_endpoint, azure_deployment, api_version)``: requests go to
    ``/openai/deployments/{deployment}/chat/completions?api-version=...`` with the key in the
    ``api-key`` header. ``model`` is still what is logged and priced; without
    ``azure_deployment`` the SDK uses ``model`` as the deployment name.
``provider = "azure"`` without ``api_version``
    the v1 API: plain ``openai.OpenAI(base_url=f"{azure_endpoint}/openai/v1/")`` with a Bearer
    key; ``model`` is the deployment name.
``provider = "compatible"``
    ``openai.OpenAI(base_url=...)`` for Ollama, vLLM, LM Studio...; the key is optional.

What servers accept differs too. When a server refuses a parameter with a 400, the classifier
drops it, retries at once and remembers it for the life of the instance:

- strict ``json_schema`` output → JSON mode, with the schema and keys in the system message;
- ``logprobs`` → the model's own confidence, flagged ``self_reported``;
- ``max_tokens`` → ``max_completion_tokens`` (OpenAI reasoning models refuse the old name;
  ``max_tokens`` is sent first because every compatible server and Azure API version knows it);
- ``temperature`` → the server's default (reasoning models accept only that).

Every HTTP call is one ``ModelCall`` row. Errors are mapped once, by ``_map_error``:
401/403 → ``AuthFailed``; 408/409/429/5xx, timeouts, connection errors → ``TransientError``
(retried at most ``inner_retries`` times here, honouring a short Retry-After; a long one is
raised so the job is rescheduled); other 4xx → ``PermanentError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import openai
import stamina
import structlog
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    completion_create_params,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

from psatriage.classifiers._openai_answer import Answer, clip, read_answer
from psatriage.classifiers.base import ClassificationRequest, Classifier, ClassifierConfig
from psatriage.domain import Classification, Facet, ModelCall, Usage
from psatriage.errors import (
    AuthFailed,
    InvalidAnswer,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.http import retry_after
from psatriage.secrets import Secret

log = structlog.get_logger(__name__)

ENGINE: Final = "openai"
_NO_KEY: Final = "no-key"  # compatible servers without auth; never the OPENAI_API_KEY env var


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
        "(any server speaking the OpenAI API: Ollama, vLLM, LM Studio...).",
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
        description="Ask for token log-probabilities to measure confidence. Turned off "
        "automatically for servers that refuse them.",
    )
    structured_output: Literal["auto", "json_schema", "json_object"] = Field(
        default="auto",
        description="'json_schema' (strict schema, the category an enum of the candidates), "
        "'json_object' (JSON mode, checked by psatriage) or 'auto' (json_schema, falling back "
        "to json_object when the server refuses it).",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million tokens per model, {input, output}; merged over the "
        "shipped estimates for OpenAI models. Unknown models cost 0.",
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


@dataclass(frozen=True, slots=True)
class _Call:
    """What one HTTP call cost."""

    latency_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class _Reply:
    completion: ChatCompletion
    call: _Call


class _Unsupported(Exception):
    """The server refused one of our optional parameters; ``feature`` names it."""

    def __init__(self, feature: str) -> None:
        super().__init__(feature)
        self.feature = feature


class OpenAICompatClassifier(Classifier[OpenAIConfig]):
    """Chat Completions with strict JSON-schema output; see the module docstring."""

    kind = "openai"
    Config = OpenAIConfig

    def __init__(self, tenant: str, config: OpenAIConfig) -> None:
        super().__init__(tenant, config)
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        self._client = _make_client(config)
        self._prices = {**DEFAULT_PRICES, **config.prices}
        # What the server accepts; each flag only ever turns off (see _refused_feature).
        self._json_schema = config.structured_output != "json_object"
        self._logprobs = config.logprobs
        self._max_tokens_param = True
        self._temperature = True
        self._retrying = stamina.RetryingCaller(
            attempts=config.inner_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=config.max_inner_wait_seconds,
            wait_jitter=0.5,
        )

    @property
    def default_model(self) -> str:
        return self.config.model

    @property
    def default_max_tokens(self) -> int:
        return self.config.max_tokens

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    # -- classify -----------------------------------------------------------------------------

    def classify(self, request: ClassificationRequest) -> Classification:
        started = time.perf_counter()
        keys = [c.key for c in request.candidates]
        if not keys:
            raise PermanentError("there are no candidate categories to choose from")
        rendered = request.prompt.render(
            ticket=request.ticket,
            candidates=request.candidates,
            instructions=request.instructions,
            tenant=request.tenant,
            company=request.company,
            facets=request.facets,
        )
        turns: list[ChatCompletionMessageParam] = [{"role": "user", "content": rendered.user}]
        usage = Usage()
        for attempt in (1, 2):
            reply = self._complete(request, rendered.system, turns, keys)
            call = reply.call
            usage = Usage(
                usage.tokens_in + call.tokens_in,
                usage.tokens_out + call.tokens_out,
                usage.cost_usd + call.cost_usd,
            )
            message = reply.completion.choices[0].message if reply.completion.choices else None
            if message is not None and message.refusal:
                self._record(request, reply.call, error=f"refused: {clip(message.refusal)}")
                raise InvalidAnswer(f"the model refused: {clip(message.refusal)}")
            answer = read_answer(reply.completion, keys, request.facets)
            if isinstance(answer, Answer):
                self._record(request, reply.call, key=answer.key, confidence=answer.confidence)
                return Classification(
                    key=answer.key,
                    confidence=answer.confidence,
                    confidence_source=answer.source,
                    reasoning=answer.reasoning,
                    engine=ENGINE,
                    model=request.model,
                    usage=usage,
                    latency_ms=_ms_since(started),
                    facets=answer.facets,
                )
            self._record(request, reply.call, error=f"invalid answer: {answer}")
            content = (message.content or "") if message is not None else ""
            if attempt == 2:
                raise InvalidAnswer(
                    f"the model gave no valid answer after a corrective retry ({answer}); "
                    f"it answered: {clip(content)!r}"
                )
            turns.append({"role": "assistant", "content": content})
            turns.append({"role": "user", "content": _correction(answer, keys, request.facets)})
        raise AssertionError("unreachable")

    def check_connection(self) -> str:
        turns: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Reply with OK."}]
        while True:
            try:
                completion = self._create(self.config.model, turns, max_tokens=1, keys=None)
            except openai.OpenAIError as exc:
                feature = self._refused_feature(exc)
                if feature is None:
                    raise self._map(exc) from exc
                self._adapt(feature)
                continue
            where = {
                "openai": self.config.base_url,
                "azure": self.config.azure_endpoint,
                "compatible": self.config.base_url,
            }[self.config.provider]
            at = f" at {where}" if where else ""
            return f"{self.config.provider}: {completion.model or self.config.model} answered{at}"

    # -- one call -----------------------------------------------------------------------------

    def _complete(
        self,
        request: ClassificationRequest,
        system: str,
        turns: list[ChatCompletionMessageParam],
        keys: list[str],
    ) -> _Reply:
        """One answer: inner retries of transient errors, and adaptation to refused parameters."""
        while True:
            try:
                return self._retrying(self._should_retry, self._call, request, system, turns, keys)
            except _Unsupported as exc:
                self._adapt(exc.feature)

    def _call(
        self,
        request: ClassificationRequest,
        system: str,
        turns: list[ChatCompletionMessageParam],
        keys: list[str],
    ) -> _Reply:
        """Exactly one HTTP call; a failure is recorded here, a success by the caller."""
        if not self._json_schema:
            system = f"{system}\n\n{_json_mode_instructions(keys, request.facets)}"
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}]
        started = time.perf_counter()
        try:
            completion = self._create(
                request.model,
                [*messages, *turns],
                max_tokens=request.max_tokens,
                keys=keys,
                facets=request.facets,
            )
        except openai.OpenAIError as exc:
            latency_ms = _ms_since(started)
            feature = self._refused_feature(exc)
            error = self._map(exc)
            self._record(request, _Call(latency_ms), error=f"{type(error).__name__}: {error}")
            if feature is not None:
                raise _Unsupported(feature) from exc
            raise error from exc
        tokens_in = completion.usage.prompt_tokens if completion.usage else 0
        tokens_out = completion.usage.completion_tokens if completion.usage else 0
        cost = self._cost(request.model, tokens_in, tokens_out)
        return _Reply(completion, _Call(_ms_since(started), tokens_in, tokens_out, cost))

    def _create(
        self,
        model: str,
        messages: list[ChatCompletionMessageParam],
        *,
        max_tokens: int,
        keys: list[str] | None,
        facets: Sequence[Facet] = (),
    ) -> ChatCompletion:
        """The request as this server accepts it; ``keys=None`` for a plain-text call."""
        response_format: completion_create_params.ResponseFormat | openai.Omit = openai.omit
        if keys is not None:
            response_format = (
                {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "ticket_category",
                        "strict": True,
                        "schema": response_schema(keys, facets),
                    },
                }
                if self._json_schema
                else {"type": "json_object"}
            )
        return self._client.chat.completions.create(
            model=model,
            messages=messages,
            response_format=response_format,
            max_tokens=max_tokens if self._max_tokens_param else openai.omit,
            max_completion_tokens=openai.omit if self._max_tokens_param else max_tokens,
            temperature=self.config.temperature if self._temperature else openai.omit,
            logprobs=True if self._logprobs and keys is not None else openai.omit,
        )

    def _should_retry(self, exc: Exception) -> bool | float:
        """stamina's backoff hook: retry transient errors; wait a short Retry-After out."""
        if not isinstance(exc, TransientError):
            return False
        if exc.retry_after is None:
            return True
        if exc.retry_after <= self.config.max_inner_wait_seconds:
            return float(exc.retry_after)
        return False  # a long wait belongs to the job scheduler, not to a blocked worker

    def _refused_feature(self, exc: openai.OpenAIError) -> str | None:
        """The optional parameter a 400/422 complains about, if we still send it."""
        if not isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            return None
        text = f"{exc.param or ''} {_server_message(exc)}".lower()
        if (
            self._json_schema
            and self.config.structured_output == "auto"
            and ("response_format" in text or "json_schema" in text)
        ):
            return "json_schema"
        if self._logprobs and "logprobs" in text:
            return "logprobs"
        if self._max_tokens_param and "max_tokens" in text and "max_completion_tokens" in text:
            return "max_tokens"
        if self._temperature and "temperature" in text:
            return "temperature"
        return None

    def _adapt(self, feature: str) -> None:
        log.info("openai.server_refused_parameter", tenant=self.tenant, feature=feature)
        if feature == "json_schema":
            self._json_schema = False
        elif feature == "logprobs":
            self._logprobs = False
        elif feature == "max_tokens":
            self._max_tokens_param = False
        elif feature == "temperature":
            self._temperature = False

    def _map(self, exc: openai.OpenAIError) -> PsatriageError:
        _scrub(exc, self._secret)
        return _map_error(exc)

    def _cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price = self._prices.get(model)
        if price is None:  # dated snapshots ("gpt-4o-mini-2024-07-18") take their family's price
            family = max(
                (name for name in self._prices if model.startswith(f"{name}-")),
                key=len,
                default=None,
            )
            price = self._prices[family] if family else None
        if price is None:
            return 0.0
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000

    def _record(
        self,
        request: ClassificationRequest,
        call: _Call,
        *,
        key: str | None = None,
        confidence: float | None = None,
        error: str | None = None,
    ) -> None:
        """The audit trail: one row per HTTP call, whatever its outcome."""
        request.record(
            ModelCall(
                tenant=request.tenant,
                ticket_id=request.ticket.id,
                event_id=request.event_id,
                engine=ENGINE,
                model=request.model,
                template_hash=request.prompt.hash,
                taxonomy_hash=request.taxonomy_hash,
                tokens_in=call.tokens_in,
                tokens_out=call.tokens_out,
                latency_ms=call.latency_ms,
                cost_usd=call.cost_usd,
                chosen_key=key,
                confidence=confidence,
                error=clip(error) if error else None,
                redactions=request.redactions,
            )
        )


# -- building the client and the request -------------------------------------------------------


def _make_client(config: OpenAIConfig) -> openai.OpenAI:
    """The SDK client for this provider; retries are ours (``max_retries=0``)."""
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
            )
        base_url = f"{config.azure_endpoint.rstrip('/')}/openai/v1/"
    else:
        base_url = config.base_url or "https://api.openai.com/v1"
    return openai.OpenAI(
        api_key=key, base_url=base_url, timeout=config.timeout_seconds, max_retries=0
    )


def response_schema(keys: Sequence[str], facets: Sequence[Facet] = ()) -> dict[str, object]:
    """The strict JSON schema of an answer: the category is one of ``keys``, each facet one of
    its option ids."""
    properties: dict[str, object] = {"category": {"type": "string", "enum": list(keys)}}
    for facet in facets:
        properties[facet.name] = {"type": "string", "enum": [o.id for o in facet.options]}
    properties["confidence"] = {"type": "number"}
    properties["reasoning"] = {"type": "string"}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _json_mode_instructions(keys: Sequence[str], facets: Sequence[Facet]) -> str:
    """What strict output would have enforced, said in words for JSON mode."""
    shape = {"category": "string", **{f.name: "string" for f in facets}}
    shape |= {"confidence": "number from 0 to 1", "reasoning": "string"}
    return (
        "Reply with one JSON object and nothing else, with exactly these fields: "
        f"{json.dumps(shape)}.\n{_allowed(keys, facets)}"
    )


def _correction(problem: str, keys: Sequence[str], facets: Sequence[Facet]) -> str:
    brevity = " Be brief: one short sentence of reasoning." if "cut off" in problem else ""
    return (
        f"Your answer was invalid: {problem}. Answer again with only the JSON object.{brevity}\n"
        f"{_allowed(keys, facets)}"
    )


def _allowed(keys: Sequence[str], facets: Sequence[Facet]) -> str:
    listed = json.dumps(list(keys), ensure_ascii=False)
    lines = [f'"category" must be exactly one of these keys: {listed}']
    lines += [
        f'"{f.name}" must be exactly one of these values: {json.dumps([o.id for o in f.options])}'
        for f in facets
    ]
    return "\n".join(lines)


# -- errors ------------------------------------------------------------------------------------


def _map_error(exc: openai.OpenAIError) -> PsatriageError:
    """The one place where SDK errors become psatriage errors."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientError("the model did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(f"cannot reach the model server: {_server_message(exc)}")
    if not isinstance(exc, openai.APIStatusError):
        return PermanentError(f"the model call failed: {clip(str(exc))}")
    status, message = exc.status_code, _server_message(exc)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return AuthFailed(f"the model server refused the credentials (HTTP {status}): {message}")
    if status in {408, 409, 429} or status >= 500:
        return TransientError(
            f"the model server is busy or failing (HTTP {status}): {message}",
            retry_after=retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.NotFoundError):
        return PermanentError(f"unknown model or deployment (HTTP 404): {message}")
    return PermanentError(f"the model server rejected the request (HTTP {status}): {message}")


def _server_message(exc: openai.APIError) -> str:
    body = exc.body
    message = body.get("message") if isinstance(body, Mapping) else None
    return clip(message if isinstance(message, str) and message else exc.message)


def _scrub(exc: openai.OpenAIError, secret: str) -> None:
    """Remove the key from a vendor message that echoes it, so no traceback can show it."""
    if not secret:
        return
    exc.args = tuple(a.replace(secret, "***") if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, openai.APIError):
        exc.message = exc.message.replace(secret, "***")
        if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
            exc.body["message"] = exc.body["message"].replace(secret, "***")


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
