"""The offline local engine: static embeddings, zero-shot scoring and supervised models.

No network and no PyTorch. The pieces, each in its own module:

``embed``      token embeddings shipped inside the ``wordllama`` wheel, mean-pooled per text.
``zeroshot``   a ticket against each candidate's path and description (no training data).
``model``      TF-IDF and embedding features, linear models per level and parent, calibrated
               probabilities.
``store``      trained models per tenant under ``<data_dir>/models/<tenant>/vNNNN.npz``.
``ranker``     the two together: a trained model for the categories it knows, zero-shot for the
               others; used by the ``local`` and ``hybrid`` classifiers and by the shortlist.
``data``       labeled JSONL files (the split rule of the data README) and taxonomy TOML files.
"""

from __future__ import annotations

from typing import Final

from psatriage.errors import ConfigError

# Defaults shared by the engine and the classifier configs; this module stays light to import
# (numpy, scikit-learn and the tokenizer load only when the engine is first used).
DEFAULT_MIN_EXAMPLES: Final = 3
DEFAULT_TEMPERATURE: Final = 0.1  # the lowest zero-shot calibration error on CFPB labels
DEFAULT_UNSEEN_WEIGHT: Final = 0.05  # prior share of tickets in categories a model never saw


class DataError(ConfigError):
    """A data, model or taxonomy file cannot be used; the message names the file and why."""
