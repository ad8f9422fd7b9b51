"""Static word embeddings: the ``l2_supercat`` vectors that the ``wordllama`` wheel carries.

The wheel holds a 32,000 x 256 token-embedding matrix (16 MB, float16) and its tokenizer. A text's
vector is the mean of its tokens' vectors, scaled to unit length: no network, no PyTorch, about
10 µs per short text. The files are read straight from the installed package, without importing
``wordllama`` (its loader would reach for the Hugging Face hub when a file is missing, and its
import configures the root logger), so nothing here can download anything.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray
from safetensors import SafetensorError
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from psatriage.errors import ConfigError

WEIGHTS: Final = "weights/l2_supercat_256.safetensors"
TOKENIZER: Final = "tokenizers/l2_supercat_tokenizer_config.json"
NAME: Final = "wordllama-l2-supercat-256"
_MAX_CHARS: Final = 6000  # the mean of a long text's tokens changes little past this
_WORD: Final = re.compile(r"[a-z0-9]+")
# Function words carry no topic and dominate a mean of token vectors: dropping them doubles
# zero-shot accuracy on named labels. "xxxx" is how anonymized data masks names and numbers.
_STOPWORD_TEXT: Final = """
    a about above after again against all also am an and any are as at be been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its just me more most my
    no nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    hi hello dear thanks thank please regards xx xxxx"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())

Vectors = NDArray[np.float32]


class Embedder:
    """Unit-length vectors for texts, from a token-embedding matrix and its tokenizer."""

    def __init__(self, weights: Path, tokenizer: Path) -> None:
        try:
            tensors = load_file(str(weights))
        except (OSError, SafetensorError) as exc:
            raise ConfigError(f"cannot read the embedding weights {weights}: {exc}") from exc
        matrix = tensors.get("embedding.weight")
        if matrix is None or matrix.ndim != 2:
            raise ConfigError(f"{weights} holds no 'embedding.weight' matrix")
        # kept as shipped (float16, 16 MB); rows become float32 when a text is pooled
        self._matrix: NDArray[np.float16] = np.ascontiguousarray(matrix, dtype=np.float16)
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # the Rust tokenizer raises a bare Exception
            raise ConfigError(f"cannot read the tokenizer {tokenizer}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.name = NAME

    def __repr__(self) -> str:
        return f"Embedder({self.name}, dim={self.dim})"

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1])

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text (all zeros for a text without tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        clipped = [content_words(text[:_MAX_CHARS]) for text in texts]
        vocabulary = self._matrix.shape[0]
        for row, encoding in enumerate(
            self._tokenizer.encode_batch(clipped, add_special_tokens=False)
        ):
            ids = [i for i in encoding.ids if 0 <= i < vocabulary]
            if ids:
                out[row] = self._matrix[ids].astype(np.float32).mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out /= norms
        return out


def content_words(text: str) -> str:
    """Lower-case words and numbers of ``text`` without function words."""
    return " ".join(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)


def package_files() -> tuple[Path, Path]:
    """The weights and tokenizer files inside the installed ``wordllama`` package."""
    spec = importlib.util.find_spec("wordllama")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise ConfigError(
            "the local engine needs the 'wordllama' package (it carries the embedding weights); "
            "fix: uv sync"
        )
    root = Path(next(iter(locations)))
    weights, tokenizer = root / WEIGHTS, root / TOKENIZER
    for file in (weights, tokenizer):
        if not file.is_file():
            raise ConfigError(f"the wordllama package has no {file.name}; fix: reinstall it")
    return weights, tokenizer


_lock = threading.Lock()
_shared: Embedder | None = None


def shared_embedder() -> Embedder:
    """The process-wide embedder, loaded on first use (about 0.2 s and 40 MB)."""
    global _shared  # noqa: PLW0603 - one read-only matrix per process, loaded lazily
    if _shared is None:
        with _lock:
            if _shared is None:
                _shared = Embedder(*package_files())
    return _shared
