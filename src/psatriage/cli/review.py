"""``psatriage review``: the review queue from the command line.

The same actions as ``/api/reviews`` and the console, through ``psatriage.reviews.act``; every
action is recorded as ``cli:<login>``. A review that does not exist, is already closed, or a
correction to a category the ticket may not have is one line on stderr and exit code 1.
"""

from __future__ import annotations

import getpass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from psatriage.cli._app import app, console, fail, runtime

if TYPE_CHECKING:
    from psatriage.store.tables import ReviewRow


class ReviewStateChoice(StrEnum):
    """``psatriage.store.tables.ReviewState``'s values, here so that ``--help`` need not load
    the database layer."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    CORRECTED = "corrected"
    DISMISSED = "dismissed"
    FILLED = "filled"


review_app = typer.Typer(
    help="The review queue: suggestions waiting for a person.", no_args_is_help=True
)
app.add_typer(review_app, name="review")

ReviewId = Annotated[int, typer.Argument(min=1, help="The review's id (see `review list`).")]


@review_app.command("list")
def review_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant.")] = None,
    state: Annotated[ReviewStateChoice, typer.Option(help="Reviews in this state.")] = (
        ReviewStateChoice.PENDING
    ),
    company: Annotated[
        str | None, typer.Option(help="Only this client company (PSA id or name).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
) -> None:
    """Reviews, newest first: the ticket, the suggestion, its confidence and alternatives."""
    from psatriage.store.tables import ReviewState

    with runtime() as built:
        if tenant is not None:
            built.tenant(tenant)  # an unknown tenant is an error, not an empty list
        rows = built.reviews.search(
            tenant=tenant, state=ReviewState(state.value), company=company, limit=limit
        )
        table = Table("id", "tenant", "ticket", "company", "title", "suggested", "conf.", "else")
        for row in rows:
            table.add_row(
                str(row.id),
                row.tenant,
                row.ticket_id,
                row.company_name,
                row.title,
                row.category_label,
                f"{row.confidence:.2f}",
                "; ".join(f"{a['label']} {a['confidence']:.2f}" for a in row.alternatives),
            )
        console.print(table)
        console.print(f"{len(rows)} {state} review(s)", highlight=False)


@review_app.command("accept")
def review_accept(review_id: ReviewId) -> None:
    """Write the suggested category to the ticket and close the review."""
    _act(review_id, "accept")


@review_app.command("correct")
def review_correct(
    review_id: ReviewId,
    category_key: Annotated[str, typer.Argument(help="The category to write instead (its key).")],
) -> None:
    """Write another category (a valid key of the ticket's tree) and record the correction."""
    _act(review_id, "correct", category_key)


@review_app.command("dismiss")
def review_dismiss(review_id: ReviewId) -> None:
    """Close the review without writing anything."""
    _act(review_id, "dismiss")


def _act(review_id: int, action: str, category_key: str | None = None) -> None:
    from psatriage import reviews

    with runtime() as built:
        try:
            row = reviews.act(
                built.review_desk(),
                review_id,
                reviews.Action(action),
                by=_actor(),
                category_key=category_key,
            )
        except (reviews.UnknownReview, reviews.ReviewClosed, reviews.UnknownCategory) as exc:
            raise fail(str(exc), code=1) from None
        console.print(_said(row), highlight=False)


def _said(row: ReviewRow) -> str:
    if row.state == ReviewStateChoice.DISMISSED.value:
        return f"review {row.id} dismissed (ticket {row.ticket_id}, nothing written)"
    return f"review {row.id} {row.state}: ticket {row.ticket_id} is {row.final_label}"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
