"""The reports as typed data: what ``psatriage report ... --json`` prints and ``GET
/api/reports/...`` answers. Hours are None where the PSA does not show them (``hours_note``
says why); a ticket without time counts as zero hours and is counted in ``without_time``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _as_utc(value: object) -> object:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcTime = Annotated[datetime, BeforeValidator(_as_utc)]  # stored naive, shown with a Z


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Summary(_Model):
    """What every report starts with: the tenant, the period and its totals."""

    tenant: str
    psa: str
    since: UtcTime = Field(description="Start of the period (UTC), included.")
    until: UtcTime = Field(description="End of the period (UTC), excluded.")
    previous_since: UtcTime = Field(description="Start of the previous period of equal length.")
    tickets: int = Field(description="Tickets closed in the period.")
    hours: float | None = Field(description="Hours recorded on them; None when unavailable.")
    hours_available: bool
    hours_note: str = Field(
        description="Why hours are missing or incomplete ('hours unavailable: <permission to "
        "add>'), or ''."
    )
    without_time: int = Field(description="Tickets with no time recorded (counted as 0 hours).")
    hours_unknown: int = Field(description="Tickets whose time has not been read yet.")
    decided: int = Field(description="Tickets psatriage decided (applied, suggested, ...).")
    refreshed_at: UtcTime | None = Field(description="When the facts were last refreshed.")
    message: str = Field(description="Why the report is empty, or ''.")


class CategoryRow(_Model):
    category: str = Field(description="The category at this level ('(none)' without one).")
    tickets: int
    share: float = Field(description="Share of the period's tickets.")
    hours: float | None
    hours_share: float | None = Field(description="Share of the period's hours.")
    median_hours: float | None = Field(description="Median hours per ticket.")
    p90_hours: float | None = Field(description="90th percentile of hours per ticket.")
    previous_tickets: int = Field(description="Tickets in the previous period.")
    previous_hours: float | None
    tickets_trend: float | None = Field(
        description="Change of tickets against the previous period (0.25 = +25%); None when the "
        "previous period had none."
    )
    hours_trend: float | None


class CategoryLevel(_Model):
    level: str = Field(description="'type', 'type › subtype' or 'full path'.")
    rows: list[CategoryRow]


class CategoriesReport(_Model):
    summary: Summary
    levels: list[CategoryLevel]


class HoursRow(_Model):
    category: str
    tickets: int
    hours: float | None
    hours_share: float | None
    median_hours: float | None
    hours_a_year: float | None = Field(
        description="Hours a year at the rate measured in the period."
    )
    tickets_a_year: float


class RecurringRow(_Model):
    category: str
    company: str
    tickets: int
    hours: float | None
    hours_a_year: float | None
    tickets_a_year: float


class AlikeRow(_Model):
    category: str
    tickets: int
    median_hours: float | None
    similarity: float = Field(description="Mean word overlap of the tickets' titles (0 to 1).")
    examples: list[str] = Field(description="Titles that stand for the category's tickets.")
    hours_a_year: float | None
    tickets_a_year: float


class AutomationReport(_Model):
    summary: Summary
    by_hours: list[HoursRow] = Field(description="Categories ranked by total hours.")
    recurring: list[RecurringRow] = Field(
        description="The same category again and again at one company."
    )
    alike: list[AlikeRow] = Field(
        description="Categories whose tickets are short, frequent and alike."
    )
    criteria: dict[str, float] = Field(description="The thresholds the lists were made with.")


class CompanyCategory(_Model):
    category: str
    tickets: int
    hours: float | None


class CompanyRow(_Model):
    company: str
    company_id: str | None
    tickets: int
    hours: float | None
    hours_share: float | None
    previous_tickets: int
    categories: list[CompanyCategory]


class CompaniesReport(_Model):
    summary: Summary
    companies: list[CompanyRow]
