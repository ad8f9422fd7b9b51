"""Datto PSA (Autotask): ``adapter`` (what psatriage asks of the PSA), ``client`` (HTTP: zone,
credentials, request threshold, queries, error bodies), ``hooks`` (signed webhook deliveries),
``picklists`` (the category tree and note values), ``webhooks`` (registration) and ``config`` (the
tenant's connection table)."""

from psatriage.psa.autotask.adapter import AutotaskAdapter
from psatriage.psa.autotask.config import FACET_LABELS, AutotaskConfig, FacetName
from psatriage.psa.autotask.picklists import LEVELS, SCOPE

__all__ = ["FACET_LABELS", "LEVELS", "SCOPE", "AutotaskAdapter", "AutotaskConfig", "FacetName"]
