"""The requester's language (ISO 639-1), detected offline.

``langdetect`` ships its language profiles inside the package: nothing is downloaded, and no
model is asked. Only the tenant's ``candidates`` are considered (a short ticket told apart from
fifty languages is mostly noise), the detector is seeded so the same text always gives the same
answer, and a ticket with fewer than ``min_letters`` letters is not judged.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

from psatriage.config.fields import FieldsSettings
from psatriage.domain import Ticket

_MAX_CHARS: Final = 2000


def known() -> frozenset[str]:
    """The languages the shipped profiles cover."""
    return frozenset(path.name for path in Path(PROFILES_DIRECTORY).iterdir())


@functools.lru_cache(maxsize=8)
def _factory(candidates: tuple[str, ...]) -> DetectorFactory:
    factory = DetectorFactory()
    factory.seed = 0
    profiles = Path(PROFILES_DIRECTORY)
    factory.load_json_profile([(profiles / code).read_text("utf-8") for code in candidates])
    return factory


def detect(settings: FieldsSettings, ticket: Ticket) -> tuple[str, float] | None:
    """``(code, probability)`` of the ticket's title and description, or None when too short
    or undecidable."""
    rules = settings.language
    text = f"{ticket.title}\n{ticket.description}"[:_MAX_CHARS]
    if sum(ch.isalpha() for ch in text) < rules.min_letters:
        return None
    detector = _factory(tuple(sorted(rules.candidates))).create()
    detector.append(text)
    try:
        best = max(detector.get_probabilities(), key=lambda found: found.prob, default=None)
    except LangDetectException:
        return None
    return (str(best.lang), float(best.prob)) if best is not None else None
