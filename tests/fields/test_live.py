"""``config check`` for a noise action's category on HaloPSA, whose ticket types each have a
category tree: routing (a team) does not change the type, so the category is looked up in every
type's tree a noise ticket may arrive with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from psatriage.fields import live
from psatriage.http import make_client
from psatriage.psa.halopsa import HaloPSAAdapter, HaloPSAConfig
from tests.fakes.halopsa import FakeHaloPSA
from tests.pipeline_kit import make_tenant
from tests.psa.conftest import serving


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[HaloPSAAdapter]:
    fake = FakeHaloPSA()
    with make_client(timeout=5.0, connect_timeout=2.0) as http:
        for started in serving(fake, monkeypatch):
            config = HaloPSAConfig.model_validate(started.connection_config())
            yield HaloPSAAdapter("acme", config, http)


def test_a_noise_category_is_checked_in_every_ticket_types_tree(adapter: HaloPSAAdapter) -> None:
    spam = {"action": "set", "category": "Hardware > Printer", "routing": "2nd Line"}
    tenant = make_tenant(fields={"enabled": ["noise"], "noise": {"spam": spam}})
    found = live.problems(tenant, adapter)
    assert found == [
        "tenant 'acme', key 'fields.noise.spam.category': 'Hardware > Printer' is not an active "
        "category of Change; fix: name an active category of Change (key or path)"
    ]  # Incident allows it, Service Request allows every category, Change none
