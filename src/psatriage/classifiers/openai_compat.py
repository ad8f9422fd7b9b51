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
    ``openai.OpenAI(base_url=...)`` for llama.cpp, Ollama, vLLM, LM Studio...; the key is
    optional.

What servers accept differs too: on first use of a model the classifier probes the server
(``psatriage.classifiers._openai_capabilities``) and sends the best request it accepts — strict
``json_schema``, llama.cpp's ``json_object`` with a schema, or JSON mode with the keys in the
prompt; log-probs, with ``top_logprobs`` where needed, or the model's own confidence; and
``max_completion_tokens`` or the server's temperature where a model refuses the usual ones. A
refusal seen later steps down the same way. An explicit ``structured_output`` is honoured: a
server that refuses it fails with the setting to change.

Candidate keys are offered as short aliases (``1``, ``2``... in the order the prompt lists them)
where that is shorter: the prompt, the schema's ``enum`` and the JSON-mode instructions show the
same values, and the answer is mapped back to a candidate key (``_openai_answer.Choices``).

Every HTTP call for a ticket is one ``ModelCall`` row, failed calls included. Errors are mapped
once, by ``_map_error``, by what the server says, and each message names the server:
401/403 → ``AuthFailed``; an unknown model, a prompt over the context, or a request the server
cannot parse (even as a 500) → ``PermanentError``; 408/409/429/other 5xx, timeouts, connection
errors, an answer without choices → ``TransientError`` (retried at most ``inner_retries`` times
here, honouring a short Retry-After; a long one is raised so the job is rescheduled); a 200
that is not a chat completion → ``PermanentError``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import stamina
import structlog

from psatriage.branches import listing_order
from psatriage.classifiers import _openai_capabilities as capabilities
from psatriage.classifiers._openai_answer import Answer, Choices, read_answer
from psatriage.classifiers._openai_capabilities import Capabilities, Refused
from psatriage.classifiers._openai_config import (
    DEFAULT_PRICES,
    OpenAIConfig,
    Price,
    cost_basis,
    make_client,
    price_for,
)
from psatriage.classifiers._openai_errors import map_error, scrub
from psatriage.classifiers._openai_request import (
    Shape,
    correction,
    json_mode_instructions,
    response_schema,
    sample_request,
    send,
)
from psatriage.classifiers.base import ClassificationRequest, Classifier, clip, model_call
from psatriage.domain import Classification, Usage
from psatriage.errors import (
    InvalidAnswer,
    PermanentError,
    PsatriageError,
    TransientError,
)
from psatriage.http import retry_after

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

__all__ = ["DEFAULT_PRICES", "OpenAICompatClassifier", "OpenAIConfig", "Price", "response_schema"]

log = structlog.get_logger(__name__)

ENGINE: Final = "openai"
_PROBE_TOKENS: Final = 40


@dataclass(frozen=True, slots=True)
class _Reply:
    completion: ChatCompletion
    latency_ms: float
    tokens_in: int
    tokens_out: int
    cost_usd: float


class OpenAICompatClassifier(Classifier[OpenAIConfig]):
    """Chat Completions with the best structured output the server has; see the module
    docstring."""

    kind = "openai"
    Config = OpenAIConfig

    def __init__(self, tenant: str, config: OpenAIConfig) -> None:
        super().__init__(tenant, config)
        self._secret = config.api_key.get_secret_value() if config.api_key else ""
        self._made: openai.OpenAI | None = None  # on first use: the SDK loads then (start-up)
        self._making = threading.Lock()
        self._closed = False
        self._prices = {**DEFAULT_PRICES, **config.prices}
        mode = config.structured_output
        self._wanted = Shape(
            structured="json_schema" if mode == "auto" else mode,
            logprobs="plain" if config.logprobs else None,
        )
        self._answered_as: dict[str, str] = {}  # model asked for -> model the server named
        self._retrying = stamina.RetryingCaller(
            attempts=config.inner_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=config.max_inner_wait_seconds,
            wait_jitter=0.5,
        )

    @property
    def _client(self) -> openai.OpenAI:
        if self._made is None:
            with self._making:
                if self._made is None:
                    made = make_client(self.config)
                    if self._closed:  # asked after close (a late background check): refuse
                        made.close()  # as a closed client does, holding no connection
                    self._made = made
        return self._made

    def warm_up(self) -> None:
        """The SDK, its client, and the capabilities of the configured model (the probe the
        first ticket would make: one short completion per process)."""
        self._capabilities(self.config.model)

    def close(self) -> None:
        """Release the connection pool."""
        with self._making:
            self._closed = True
            if self._made is not None:
                self._made.close()

    def capabilities(self) -> dict[str, str] | None:
        where = {"server": self.config.server, "model": self.config.model}
        found = capabilities.cached(self._key(self.config.model))
        if found is None:
            return {**where, "status": "not probed yet: on the first ticket or config check"}
        return {**where, **found.describe()}

    # -- classify -----------------------------------------------------------------------------

    def classify(self, request: ClassificationRequest) -> Classification:
        started = time.perf_counter()
        if not request.candidates:
            raise PermanentError("there are no candidate categories to choose from")
        # short aliases numbered in the order the prompt lists the candidates
        choices = Choices.for_keys([c.key for c in listing_order(request.candidates)])
        rendered = request.prompt.render(
            ticket=request.ticket,
            candidates=request.candidates,
            instructions=request.instructions,
            tenant=request.tenant,
            company=request.company,
            facets=request.facets,
            fields=request.fields,
            keys=choices.aliased,
            examples=request.examples,
        )
        offered = list(choices.shown)
        turns: list[ChatCompletionMessageParam] = [{"role": "user", "content": rendered.user}]
        usage = Usage()
        for attempt in (1, 2):
            reply = self._complete(request, rendered.system, turns, offered)
            usage = Usage(
                usage.tokens_in + reply.tokens_in,
                usage.tokens_out + reply.tokens_out,
                usage.cost_usd + reply.cost_usd,
            )
            message = reply.completion.choices[0].message
            if message.refusal:
                self._record(request, reply, error=f"refused: {clip(message.refusal)}")
                raise InvalidAnswer(f"the model refused: {clip(message.refusal)}")
            answer = read_answer(reply.completion, choices, request.facets, request.fields)
            if isinstance(answer, Answer):
                self._record(request, reply, key=answer.key, confidence=answer.confidence)
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
                    fields=answer.fields,
                )
            self._record(request, reply, error=f"invalid answer: {answer}")
            content = message.content or ""
            if attempt == 2:
                raise InvalidAnswer(self._no_valid_answer(request, answer, content))
            turns.append({"role": "assistant", "content": content})
            retry = correction(answer, offered, request.facets, request.fields)
            turns.append({"role": "user", "content": retry})
        raise AssertionError("unreachable")

    def _no_valid_answer(self, request: ClassificationRequest, problem: str, content: str) -> str:
        fix = f"; raise max_tokens (now {request.max_tokens})" if "cut off" in problem else ""
        return (
            f"{request.model} at {self.config.server} gave no valid answer after a corrective "
            f"retry ({problem}){fix}; it answered: {clip(content)!r}"
        )

    def check_connection(self) -> str:
        """Probe the server, then classify a sample ticket with the tenant's model, limit and
        the request shape found: the real request, not a ping."""
        model = self.config.model
        found = self._capabilities(model)
        self.classify(sample_request(self.tenant, model, self.config.max_tokens))
        found = capabilities.cached(self._key(model)) or found
        described = found.describe()
        parts = [f"{self.config.provider}: {model} answered at {self.config.server}"]
        answered = self._answered_as.get(model, model)
        if not (answered.startswith(model) or self.config.provider == "azure"):
            parts.append(f"the server answered as {answered!r}: check model")
        parts += [f"{name}: {value}" for name, value in described.items()]
        parts.append(f"cost: {cost_basis(self.config, model)}")
        return "\n".join(parts)

    # -- capabilities -------------------------------------------------------------------------

    def _key(self, model: str) -> Hashable:
        config = self.config
        return (config.provider, config.server, config.azure_deployment, config.api_version, model)

    def _capabilities(self, model: str) -> Capabilities:
        return capabilities.detect(self._key(model), lambda: self._probe(model))

    def _probe(self, model: str) -> Capabilities:
        auto = self.config.structured_output == "auto"
        if self.config.provider == "compatible":
            capabilities.check_served(self._client, model, self.config.server)

        def attempt(shape: Shape) -> ChatCompletion:
            return self._send(
                shape,
                model,
                capabilities.PROBE_MESSAGES,
                max_tokens=min(_PROBE_TOKENS, self.config.max_tokens),
                schema=capabilities.PROBE_SCHEMA,
                schema_name="capability_probe",
            )

        try:
            found = capabilities.probe(
                lambda shape: self._retrying(self._should_retry, attempt, shape),
                self._wanted,
                auto=auto,
            )
        except Refused as refused:
            raise self._explicit_refused(refused) from refused
        log.info(
            "openai.capabilities",
            tenant=self.tenant,
            server=self.config.server,
            model=model,
            **found.describe(),
        )
        return found

    def _explicit_refused(self, refused: Refused) -> PermanentError:
        return PermanentError(
            f"the model server at {self.config.server} refuses structured_output "
            f"{self.config.structured_output!r} (HTTP {refused.status}: {refused.message}); set "
            'structured_output = "auto" to use what it supports'
        )

    # -- one call -----------------------------------------------------------------------------

    def _complete(
        self,
        request: ClassificationRequest,
        system: str,
        turns: list[ChatCompletionMessageParam],
        offered: list[str],
    ) -> _Reply:
        """One answer: inner retries of transient errors, a step down on a refused feature."""
        while True:
            found = self._capabilities(request.model)
            try:
                return self._retrying(
                    self._should_retry, self._call, request, found.shape, system, turns, offered
                )
            except Refused as refused:
                if refused.feature == "structured" and self.config.structured_output != "auto":
                    raise self._explicit_refused(refused) from refused
                log.info(
                    "openai.server_refused_parameter", tenant=self.tenant, feature=refused.feature
                )
                capabilities.remember(self._key(request.model), found.without(refused))

    def _call(
        self,
        request: ClassificationRequest,
        shape: Shape,
        system: str,
        turns: list[ChatCompletionMessageParam],
        offered: list[str],
    ) -> _Reply:
        """Exactly one HTTP call; a failure is recorded here, a success by the caller."""
        if shape.structured != "json_schema":
            system = (
                f"{system}\n\n{json_mode_instructions(offered, request.facets, request.fields)}"
            )
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}]
        grammar = shape.structured == "json_object_schema"
        schema = response_schema(
            offered,
            request.facets,
            fields=request.fields,
            max_tokens=request.max_tokens if grammar else None,
        )
        started = time.perf_counter()
        try:
            completion = self._send(
                shape,
                request.model,
                [*messages, *turns],
                max_tokens=request.max_tokens,
                schema=schema,
                schema_name="ticket_category",
            )
        except (Refused, PsatriageError) as exc:
            self._record(request, _ms_since(started), error=f"{type(exc).__name__}: {exc}")
            raise
        usage = completion.usage
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        cost = self._cost(request.model, tokens_in, tokens_out)
        return _Reply(completion, _ms_since(started), tokens_in, tokens_out, cost)

    def _send(
        self,
        shape: Shape,
        model: str,
        messages: list[ChatCompletionMessageParam],
        *,
        max_tokens: int,
        schema: dict[str, object],
        schema_name: str,
    ) -> ChatCompletion:
        """One request in ``shape``: a refusal of an optional part is ``Refused``, any other
        failure a psatriage error, and a 200 that carries no answer is one too."""
        import openai
        from openai.types.chat import ChatCompletion

        try:
            completion = send(
                self._client,
                shape,
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                schema=schema,
                schema_name=schema_name,
            )
        except openai.OpenAIError as exc:
            scrub(exc, self._secret)
            refused = capabilities.refused_feature(exc, shape)
            if refused is not None:
                raise refused from exc
            raise _map_error(exc, self.config.server, model) from exc
        if not isinstance(completion, ChatCompletion):
            raise PermanentError(
                f"the model server at {self.config.server} answered HTTP 200 with something "
                f"that is not a chat completion: {clip(str(completion))!r}; is base_url the API "
                "root (usually ending in /v1)?"
            )
        if not completion.choices:
            raise TransientError(
                f"the model server at {self.config.server} answered without any choice"
            )
        self._answered_as[model] = completion.model or model
        return completion

    def _should_retry(self, exc: Exception) -> bool | float:
        """stamina's backoff hook: retry transient errors; wait a short Retry-After out."""
        if not isinstance(exc, TransientError):
            return False
        if exc.retry_after is None:
            return True
        if exc.retry_after <= self.config.max_inner_wait_seconds:
            return float(exc.retry_after)
        return False  # a long wait belongs to the job scheduler, not to a blocked worker

    def _cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price = None if self.config.cost == "free" else price_for(self._prices, model)
        if price is None:
            return 0.0
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000

    def _record(
        self,
        request: ClassificationRequest,
        reply: _Reply | float,
        *,
        key: str | None = None,
        confidence: float | None = None,
        error: str | None = None,
    ) -> None:
        """The audit trail: one row per HTTP call, ``reply`` or the latency of a failed one."""
        answered = reply if isinstance(reply, _Reply) else None
        latency_ms = reply.latency_ms if isinstance(reply, _Reply) else reply
        request.record(
            model_call(
                request,
                engine=ENGINE,
                model=request.model,
                template_hash=request.prompt.hash,
                latency_ms=latency_ms,
                tokens_in=answered.tokens_in if answered else 0,
                tokens_out=answered.tokens_out if answered else 0,
                cost_usd=answered.cost_usd if answered else 0.0,
                key=key,
                confidence=confidence,
                error=error,
            )
        )


# -- errors ------------------------------------------------------------------------------------


def _map_error(exc: openai.OpenAIError, server: str, model: str) -> PsatriageError:
    """SDK errors as psatriage errors (see ``_openai_errors.map_error``)."""
    import openai

    wait = retry_after(exc.response.headers) if isinstance(exc, openai.APIStatusError) else None
    return map_error(exc, server, model, retry_after=wait)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
