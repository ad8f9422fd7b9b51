"""One ticket's path, top to bottom: read, guard, classify, decide, write, record.

``categorize`` is called by the worker for a claimed event (and by ``psatriage categorize``). The
modules, in the order a ticket meets them:

- ``flow``: ``categorize``, the decision flow (a checkpoint resumed, noise by rules, the guard, a
  storm followed or a new decision, the policy's action, the writes, the finalized row);
- ``deciding``: a new decision with the model (routing first where it picks the tree, the fields);
- ``following``: alert storms reusing a decision without a model call;
- ``noise_actions``: what the tenant does with noise;
- ``classification``: the candidates, the classifier and the check of its answer;
- ``writing`` and ``notes``: the one PSA update and the marked note, the error note;
- ``records``: the outcome to follow and the review, beside the decision;
- ``plan`` and ``deps``: the checkpointed plan, and what the pipeline needs for one tenant.
"""

from __future__ import annotations

from psatriage.pipeline.classification import classify
from psatriage.pipeline.deps import Deps, field_options
from psatriage.pipeline.flow import categorize
from psatriage.pipeline.notes import error_marker, marker, note_for, report_failure
from psatriage.pipeline.writing import write_category

__all__ = [
    "Deps",
    "categorize",
    "classify",
    "error_marker",
    "field_options",
    "marker",
    "note_for",
    "report_failure",
    "write_category",
]
