"""Example PSA: a small JSON API with an API key, page-numbered lists and signed webhooks."""

from tests.psa.examples.example.adapter import ExampleAdapter
from tests.psa.examples.example.config import ExampleConfig

__all__ = ["ExampleAdapter", "ExampleConfig"]
