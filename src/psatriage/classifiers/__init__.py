"""Classifiers, one module each, found by convention (see ``psatriage.plugins``)."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from psatriage.classifiers.base import ClassificationRequest, Classifier
from psatriage.plugins import discover


@cache
def classifiers() -> dict[str, type[Classifier[Any]]]:
    """Every registered classifier class by ``kind`` (``openai``, ...)."""
    return discover(sys.modules[__name__], Classifier, skip=frozenset({"base"}))


__all__ = ["ClassificationRequest", "Classifier", "classifiers"]
