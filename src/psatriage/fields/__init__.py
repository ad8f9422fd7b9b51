"""Ticket fields decided beside the category, from the same model call: priority, routing,
noise, language, sentiment and summary.

``decide`` asks and judges them (one strict schema, an ``enum`` per choice from the PSA's live
values, a band per field). Priority and routing are written in the same PSA update as the
category; the others are shown in the note.
"""

from __future__ import annotations

from psatriage.fields.decide import (
    LABELS,
    Options,
    band,
    decide,
    in_order,
    routing_targets,
    specs,
)

__all__ = ["LABELS", "Options", "band", "decide", "in_order", "routing_targets", "specs"]
