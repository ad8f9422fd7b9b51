"""ConnectWise Manage (ConnectWise PSA): ``adapter`` (what psatriage asks of the PSA), ``client``
(HTTP: codebase, credentials, paging, error bodies), ``callbacks`` (signed callbacks),
``taxonomy`` (board trees) and ``config`` (the tenant's connection table)."""

from psatriage.psa.connectwise.adapter import ConnectWiseAdapter
from psatriage.psa.connectwise.callbacks import key_url_allowed
from psatriage.psa.connectwise.config import ConnectWiseConfig

__all__ = ["ConnectWiseAdapter", "ConnectWiseConfig", "key_url_allowed"]
