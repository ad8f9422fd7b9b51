"""HaloPSA: ``adapter`` (what psatriage asks of the PSA), ``client`` (HTTP: the access token,
paging, error bodies), ``webhooks`` (delivery checks and registration), ``taxonomy`` (category
fields by ticket type), ``history`` (polling and training lists), ``wire`` (Halo's value shapes)
and ``config`` (the tenant's connection table)."""

from psatriage.psa.halopsa.adapter import HaloPSAAdapter
from psatriage.psa.halopsa.config import HaloPSAConfig

__all__ = ["HaloPSAAdapter", "HaloPSAConfig"]
