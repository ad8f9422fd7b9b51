"""Trained models per tenant, versioned: ``<root>/<tenant>/v0001.npz`` (+ ``v0001.json``, the
training report for people). The newest version is the one used; older ones stay for rollback
(delete a file to retire it).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from psatriage.local_engine.model import TrainedModel

_VERSION: Final = re.compile(r"^v(\d{4,})\.npz$")


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"ModelStore({self.root})"

    def folder(self, tenant: str) -> Path:
        return self.root / tenant

    def versions(self, tenant: str) -> list[Path]:
        """The tenant's model files, oldest first."""
        folder = self.folder(tenant)
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self, tenant: str) -> Path | None:
        versions = self.versions(tenant)
        return versions[-1] if versions else None

    def save(self, tenant: str, model: TrainedModel) -> Path:
        """Write the model as the tenant's next version; returns its file."""
        numbers = [_number(p) for p in self.versions(tenant)]
        name = f"v{max(numbers, default=0) + 1:04d}"
        model.report = replace(model.report, version=name)
        path = self.folder(tenant) / f"{name}.npz"
        model.save(path)
        path.with_suffix(".json").write_text(
            json.dumps(model.report.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        return path


def _number(path: Path) -> int:
    match = _VERSION.match(path.name)
    return int(match.group(1)) if match else 0
