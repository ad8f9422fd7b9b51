"""A fake Kaseya BMS (``server``) and its contract kit (``kit``)."""

from tests.fakes.kaseya_bms.kit import CASES, envelope_error, kit
from tests.fakes.kaseya_bms.server import FakeKaseyaBMS, sign

__all__ = ["CASES", "FakeKaseyaBMS", "envelope_error", "kit", "sign"]
