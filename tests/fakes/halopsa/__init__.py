"""A fake HaloPSA (``server``) and its contract kit (``kit``)."""

from tests.fakes.halopsa.kit import CASES, kit
from tests.fakes.halopsa.server import NEW_TICKET_NOTIFICATION, UPDATED_NOTIFICATION, FakeHaloPSA

__all__ = ["CASES", "NEW_TICKET_NOTIFICATION", "UPDATED_NOTIFICATION", "FakeHaloPSA", "kit"]
