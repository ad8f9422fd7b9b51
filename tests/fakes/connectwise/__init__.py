"""A fake ConnectWise Manage (``server``) and its contract kit (``kit``)."""

from tests.fakes.connectwise.kit import CASES, kit
from tests.fakes.connectwise.server import API, LEVELS, Board, FakeConnectWise

__all__ = ["API", "CASES", "LEVELS", "Board", "FakeConnectWise", "kit"]
