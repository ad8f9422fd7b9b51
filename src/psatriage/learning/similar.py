"""The tenant's labeled examples most like a ticket, for an LLM's prompt (``learning.examples``).

Similarity is the cosine of the local engine's static embeddings (no model call, no network).
Examples of the ticket's own client company come first: the ``k`` most similar of them, then the
most similar of the others to fill up to ``k``. Only examples whose category is among the ticket's
candidates can be shown (the model must be able to answer with it). A tenant's examples and their
vectors are read once a minute, not per ticket; a tenant without examples never loads the
embedder.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy.orm import Session, sessionmaker

from psatriage.learning.dataset import from_examples
from psatriage.prompts import PromptExample, example_text
from psatriage.redact import Redactor
from psatriage.store.examples import list_examples

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from psatriage.learning.dataset import Labeled

REFRESH_SECONDS: Final = 60.0
MAX_EXAMPLES: Final = 5000  # the newest examples a tenant's search looks at


@dataclass
class _Loaded:
    at: float
    items: list[Labeled]
    vectors: NDArray[np.float32] | None


class SimilarExamples:
    """Per process: each tenant's examples with their vectors, refreshed every minute."""

    def __init__(
        self, sessions: sessionmaker[Session], refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self._sessions = sessions
        self._refresh = refresh_seconds
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def for_ticket(
        self,
        tenant: str,
        *,
        text: str,
        company: str | None,
        candidates: Collection[str],
        k: int,
        chars: int,
        redactor: Redactor | None = None,
    ) -> tuple[PromptExample, ...]:
        """The up to ``k`` examples to show for a ticket whose (redacted) text is ``text``."""
        if k <= 0:
            return ()
        loaded = self._tenant(tenant)
        usable = [i for i, item in enumerate(loaded.items) if item.key in candidates]
        if not usable or loaded.vectors is None:
            return ()
        from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415

        query = shared_embedder().embed([text])[0]
        scores = loaded.vectors[usable] @ query
        ranked = [usable[i] for i in scores.argsort()[::-1].tolist()]
        own = [i for i in ranked if company and loaded.items[i].company == company][:k]
        chosen = own + [i for i in ranked if i not in own][: k - len(own)]
        shown = []
        for index in chosen:
            item = loaded.items[index]
            body = item.text
            if redactor is not None:  # stored redacted; masked again with today's patterns
                body = redactor.text(body, Counter())
            shown.append(PromptExample(example_text(body, chars), item.key, item.label))
        return tuple(shown)

    def _tenant(self, tenant: str) -> _Loaded:
        now = time.monotonic()
        with self._lock:
            loaded = self._loaded.get(tenant)
        if loaded is not None and now - loaded.at < self._refresh:
            return loaded
        items = from_examples(list_examples(self._sessions, tenant=tenant, limit=MAX_EXAMPLES))
        vectors = None
        if items:
            from psatriage.local_engine.embed import shared_embedder  # noqa: PLC0415

            vectors = shared_embedder().embed([i.text for i in items])
        fresh = _Loaded(now, items, vectors)
        with self._lock:
            self._loaded[tenant] = fresh
        return fresh
