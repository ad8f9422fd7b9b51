"""Kaseya BMS: ``adapter`` (what psatriage asks of the PSA), ``client`` (HTTP: the token, the
envelope, lookups, pages), ``wire`` (the envelope's fields, tokens, ticket text), ``webhooks``
(undocumented deliveries and their registration) and ``config`` (the tenant's connection table)."""

from psatriage.psa.kaseya_bms.adapter import KaseyaBMSAdapter
from psatriage.psa.kaseya_bms.config import KaseyaBMSConfig

__all__ = ["KaseyaBMSAdapter", "KaseyaBMSConfig"]
