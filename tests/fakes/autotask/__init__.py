"""A fake Datto PSA (Autotask) (``server``, ``data``) and its contract kit (``kit``)."""

from tests.fakes.autotask.data import dotnet_json, field_info, pick
from tests.fakes.autotask.kit import CASES, TRICKY, kit
from tests.fakes.autotask.server import API, DISCOVERY, FakeAutotask

__all__ = ["API", "CASES", "DISCOVERY", "TRICKY", "FakeAutotask", "dotnet_json", "field_info",
           "kit", "pick"]  # fmt: skip
