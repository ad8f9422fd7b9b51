"""The ``[tenants.NAME.fields]`` table: which ticket fields psatriage decides beside the category,
and each field's policy (``psatriage.fields`` does the deciding).

::

    [tenants.acme.fields]
    enabled = ["priority", "routing", "noise", "sentiment", "summary"]

    [tenants.acme.policy.fields.priority]  # its band, as the category's (policy.band)
    apply_at = 0.8

    [tenants.acme.fields.priority]
    order = ["P1", "P2", "P3"]
    [tenants.acme.fields.priority.matrix]   # urgency -> impact -> priority
    high = { high = "P1", medium = "P2", low = "P2" }
    ...

    [tenants.acme.fields.noise.auto_reply]
    action = "skip"

    [tenants.acme.companies."Contoso".fields.priority]
    at_least = "P2"                    # a VIP client
    [tenants.acme.companies."Fabrikam".fields.routing]
    enabled = false                    # this client's tickets keep the board they come in on
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FieldName = Literal["priority", "routing", "noise", "language", "sentiment", "summary"]
FIELD_NAMES: tuple[FieldName, ...] = get_args(FieldName)
STORED_FIELDS: frozenset[str] = frozenset({"priority", "routing"})
"""Fields written to the PSA (the adapter must be able to store them); the others go to the note."""

LEVELS = ("high", "medium", "low")
"""The urgency and impact levels of a priority matrix, highest first."""

NoiseKind = Literal["spam", "auto_reply", "alert", "newsletter"]
NOISE_KINDS: tuple[NoiseKind, ...] = get_args(NoiseKind)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSettings(_Strict):
    """Settings of one field beside its band, which is ``[policy.fields.NAME]`` (mode,
    ``apply_at``, ``suggest_at``: the category's where unset)."""


class FieldOverride(_Strict):
    """Per-company changes to one field's settings (its band: ``companies.X.policy.fields``)."""

    enabled: bool | None = Field(
        default=None,
        description="false: the field is off for this company's tickets (not asked, not "
        "written, not in the note); true: on for them although fields.enabled leaves it out.",
    )
    at_least: str | None = Field(
        default=None,
        description="priority only: never below this priority (a VIP client), one of "
        "fields.priority.order.",
    )


class PriorityField(FieldSettings):
    """The priority, from the tenant's urgency × impact matrix or chosen among the PSA's own."""

    matrix: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="urgency -> impact -> the PSA's priority name, for urgency and impact each "
        "high, medium and low (all nine). With it the model judges urgency and impact and the "
        "matrix gives the priority; without it the model chooses among the PSA's active "
        "priorities.",
    )
    order: tuple[str, ...] = Field(
        default=(),
        description="The PSA's priority names from most to least urgent: needed by at_least "
        "and frustrated_raises.",
    )
    at_least: str | None = Field(
        default=None, description="Never decide a priority below this one (one of order)."
    )
    frustrated_raises: bool = Field(
        default=False,
        description="A frustrated requester (the sentiment field) raises the priority one step "
        "in order.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PriorityField:
        complete = set(self.matrix) == set(LEVELS) and all(
            set(row) == set(LEVELS) for row in self.matrix.values()
        )
        if self.matrix and not complete:
            raise ValueError(
                "matrix needs urgency high, medium and low, each with impact high, medium and "
                "low (nine priorities)"
            )
        order = {name.casefold() for name in self.order}
        if self.at_least is not None and self.at_least.casefold() not in order:
            raise ValueError(f"at_least {self.at_least!r} is not in order; list it there")
        if self.frustrated_raises and not self.order:
            raise ValueError("frustrated_raises needs order (most urgent first)")
        named = {n for row in self.matrix.values() for n in row.values()}
        missing = sorted(n for n in named if n.casefold() not in order)
        if self.order and missing:
            raise ValueError(f"the matrix names {missing}, which order does not list")
        return self


class RoutingField(FieldSettings):
    """The board (ConnectWise), queue (Autotask, Kaseya BMS) or team (HaloPSA)."""

    targets: tuple[str, ...] = Field(
        default=(),
        description="The names the model may route to (each must be active in the PSA, see "
        "config check); empty: every active one.",
    )


class NoiseAction(_Strict):
    """What happens to one kind of noise."""

    action: Literal["categorize", "skip", "set"] = Field(
        default="categorize",
        description="categorize (as any ticket), skip (leave it alone: no write, no note, and "
        "no model call when a rule recognises it) or set (write category, routing and/or status "
        "below).",
    )
    category: str | None = Field(
        default=None,
        description="set: the category to write (key or path such as 'Admin › Spam'; on "
        "ConnectWise one of the tree of the board the routing below moves it to, else of every "
        "board).",
    )
    routing: str | None = Field(
        default=None, description="set: the board / queue / team to move it to (by name)."
    )
    status: str | None = Field(
        default=None,
        description="set: the status to give it (by name; on ConnectWise one of its board's), "
        "in the same update as the category and routing.",
    )

    @model_validator(mode="after")
    def _set_names_something(self) -> NoiseAction:
        named = (self.category, self.routing, self.status)
        if self.action == "set" and not any(named):
            raise ValueError('action "set" needs category, routing or status (or several)')
        if self.action != "set" and any(named):
            raise ValueError('category, routing and status are for action "set"')
        return self


class NoiseField(FieldSettings):
    """Spam, auto-replies, monitoring alerts and newsletters, told apart from real requests."""

    rules: bool = Field(
        default=True,
        description="Recognise obvious auto-replies and out-of-office messages by their title "
        "before asking the model.",
    )
    spam: NoiseAction = Field(default_factory=NoiseAction)
    auto_reply: NoiseAction = Field(default_factory=lambda: NoiseAction(action="skip"))
    alert: NoiseAction = Field(default_factory=NoiseAction)
    newsletter: NoiseAction = Field(default_factory=NoiseAction)

    def action_for(self, kind: str) -> NoiseAction:
        action: NoiseAction = getattr(self, kind)
        return action


class LanguageField(FieldSettings):
    """The requester's language, ISO 639-1, detected offline (note only)."""

    candidates: tuple[str, ...] = Field(
        default=("en", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "no", "fi", "pl"),
        description="The languages to tell apart (ISO 639-1 codes; zh-cn and zh-tw for Chinese).",
    )
    min_letters: int = Field(
        default=20, ge=1, description="Tickets with fewer letters are not judged."
    )

    @field_validator("candidates")
    @classmethod
    def _shipped(cls, codes: tuple[str, ...]) -> tuple[str, ...]:
        from psatriage.fields.language import known  # noqa: PLC0415 - the package's own list

        unknown = sorted(set(codes) - known())
        if unknown or not codes:
            raise ValueError(
                f"no language profile for {unknown or 'an empty list'}; use codes of "
                f"{', '.join(sorted(known()))}"
            )
        return codes


class SentimentField(FieldSettings):
    """negative / neutral / positive, and whether the requester is frustrated (note only)."""


class SummaryField(FieldSettings):
    """One sentence for the technician (in the note), optionally the ticket's new title."""

    rewrite_generic_titles: bool = Field(
        default=False,
        description="Also write the summary as the ticket's title when the title is empty or "
        "generic ('Help', 'Issue', 'Ticket from ...': see generic_titles), in the same update.",
    )
    generic_titles: tuple[str, ...] = Field(
        default=(
            "help", "help needed", "issue", "problem", "question", "request", "support",
            "ticket", "new ticket", "urgent", "hello", "hi", "no subject", "(no subject)",
            "ticket from *", "new ticket from *", "message from *", "email from *",
            "support request from *",
        ),
        description="Titles taken as generic, compared case-insensitively without surrounding "
        "punctuation; a trailing * matches any ending.",
    )  # fmt: skip

    def is_generic(self, title: str) -> bool:
        text = title.strip().strip(".!?:;-").strip().casefold()
        if not text:
            return True
        for pattern in self.generic_titles:
            wanted = pattern.casefold()
            if wanted.endswith("*") and text.startswith(wanted[:-1]):
                return True
            if text == wanted:
                return True
        return False


class FieldsSettings(_Strict):
    enabled: tuple[FieldName, ...] = Field(
        default=(),
        description="The fields decided beside the category: priority, routing, noise, "
        "language, sentiment, summary.",
    )
    priority: PriorityField = Field(default_factory=PriorityField)
    routing: RoutingField = Field(default_factory=RoutingField)
    noise: NoiseField = Field(default_factory=NoiseField)
    language: LanguageField = Field(default_factory=LanguageField)
    sentiment: SentimentField = Field(default_factory=SentimentField)
    summary: SummaryField = Field(default_factory=SummaryField)

    @model_validator(mode="after")
    def _once_each(self) -> FieldsSettings:
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("enabled names a field twice")
        return self

    def settings(self, name: FieldName) -> FieldSettings:
        found: FieldSettings = getattr(self, name)
        return found

    def active(self) -> tuple[FieldName, ...]:
        """The enabled fields, in the order of ``FIELD_NAMES``."""
        return tuple(name for name in FIELD_NAMES if name in self.enabled)

    def with_overrides(self, overrides: dict[FieldName, FieldOverride]) -> FieldsSettings:
        """These settings with a company's per-field changes."""
        if not overrides:
            return self
        changes: dict[str, object] = {}
        enabled = set(self.enabled)
        for name, override in overrides.items():
            values = override.model_dump(exclude_none=True)
            if values.pop("enabled", None) is not None:
                enabled = enabled | {name} if override.enabled else enabled - {name}
            if "at_least" in values and name != "priority":
                values.pop("at_least")
            changes[name] = self.settings(name).model_validate(
                {**self.settings(name).model_dump(), **values}
            )
        changes["enabled"] = tuple(name for name in FIELD_NAMES if name in enabled)
        return self.model_copy(update=changes)
