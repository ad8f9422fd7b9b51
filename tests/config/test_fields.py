"""The [fields] table: valid settings load; bad ones fail at load naming tenant, key and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psatriage.config import RawTenant
from psatriage.config.loader import _unstorable_fields
from psatriage.errors import ConfigError
from tests.test_config import _load, _secrets, _tenant

__all__ = ["_secrets"]  # the autouse fixture that sets the tenants' secrets

MATRIX = {u: dict.fromkeys(("high", "medium", "low"), "P1") for u in ("high", "medium", "low")}


def test_fields_load_with_company_overrides(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        {
            "acme": _tenant(
                fields={
                    "enabled": ["priority", "noise", "summary"],
                    "priority": {"matrix": MATRIX, "order": ["P1", "P2"]},
                    "noise": {"spam": {"action": "set", "category": "Admin › Spam"}},
                },
                companies={
                    "Contoso": {
                        "fields": {"priority": {"at_least": "P2"}},
                        "policy": {"fields": {"priority": {"apply_at": 0.9}}},
                    }
                },
                policy={"fields": {"priority": {"apply_at": 0.7, "mode": "suggest"}}},
                storm_window_minutes=10,
            )
        },
    )
    tenant = config.tenant("acme")
    assert tenant.fields.active() == ("priority", "noise", "summary")
    assert tenant.storm_window_minutes == 10
    assert tenant.effective(None, "Contoso").fields.priority.at_least == "P2"
    assert tenant.effective(None, "Other").fields.priority.at_least is None
    assert tenant.policy.fields["priority"].apply_at == 0.7
    contoso = tenant.effective(None, "Contoso").policy.fields["priority"]
    assert (contoso.apply_at, contoso.mode) == (0.9, "suggest")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"enabled": ["colour"]}, ["key 'fields.enabled.0'", "'priority', 'routing'"]),
        ({"enabled": ["noise", "noise"]}, ["key 'fields'", "names a field twice"]),
        (
            {"priority": {"matrix": {"high": {"high": "P1"}}}},
            ["key 'fields.priority'", "nine priorities"],
        ),
        (
            {"priority": {"order": ["P1"], "at_least": "P9"}},
            ["key 'fields.priority'", "at_least 'P9' is not in order"],
        ),
        (
            {"priority": {"matrix": MATRIX, "order": ["P2"]}},
            ["key 'fields.priority'", "the matrix names ['P1']"],
        ),
        ({"priority": {"frustrated_raises": True}}, ["frustrated_raises needs order"]),
        (
            {"noise": {"spam": {"action": "set"}}},
            ["key 'fields.noise.spam'", 'action "set" needs category, routing or status'],
        ),
        ({"summary": {"mode": "apply"}}, ["key 'fields.summary.mode'", "fix: remove it"]),
    ],
)
def test_bad_fields_name_tenant_key_and_fix(
    tmp_path: Path, fields: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(fields=fields)})
    message = str(caught.value)
    assert "tenant 'acme'" in message
    for part in expected:
        assert part in message


def test_a_company_floor_must_be_in_the_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"companies.x.fields.priority.at_least 'P3'"):
        _load(
            tmp_path,
            {
                "acme": _tenant(
                    fields={"priority": {"order": ["P1", "P2"]}},
                    companies={"x": {"fields": {"priority": {"at_least": "P3"}}}},
                )
            },
        )


def test_a_field_the_psa_cannot_store_is_a_load_error() -> None:
    raw = RawTenant.model_validate(
        {"psa": "x", "connection": {}, "fields": {"enabled": ["routing", "summary"]}}
    )
    assert _unstorable_fields("acme", raw, frozenset({"priority"})) == [
        "tenant 'acme', key 'fields.enabled': the x adapter cannot store the routing field; "
        "fix: remove 'routing' from fields.enabled"
    ]
    assert _unstorable_fields("acme", raw, frozenset({"priority", "routing"})) == []
    company = RawTenant.model_validate(
        {
            "psa": "x",
            "connection": {},
            "companies": {"Contoso": {"fields": {"routing": {"enabled": True}}}},
        }
    )
    assert _unstorable_fields("acme", company, frozenset({"priority"})) == [
        "tenant 'acme', key 'companies.Contoso.fields.routing.enabled': the x adapter cannot "
        "store the routing field; fix: remove the key"
    ]


def test_a_company_turns_a_field_off_or_on(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        {
            "acme": _tenant(
                fields={"enabled": ["priority", "routing", "noise"]},
                companies={
                    "Contoso": {"fields": {"routing": {"enabled": False}}},
                    "Fabrikam": {"fields": {"summary": {"enabled": True}}},
                },
            )
        },
    )
    tenant = config.tenant("acme")
    assert tenant.effective(None, "Contoso").fields.active() == ("priority", "noise")
    assert tenant.effective(None, "Fabrikam").fields.active() == (
        "priority", "routing", "noise", "summary"
    )  # fmt: skip
    assert tenant.effective(None, "Other").fields.active() == ("priority", "routing", "noise")


def test_a_field_and_the_facet_it_replaces_are_not_both_used(tmp_path: Path) -> None:
    connection = {
        "zone_url": "https://webservices5.autotask.net",
        "username": "api@acme.example",
        "secret": "env:T_PRIVATE",
        "integration_code": "env:T_PUBLIC",
        "webhook_secret": "env:T_OPENAI",
        "facets": ["queueID"],
    }
    with pytest.raises(ConfigError) as caught:
        _load(
            tmp_path,
            {
                "acme": _tenant(
                    psa="autotask", connection=connection, fields={"enabled": ["routing"]}
                )
            },
        )
    assert (
        "tenant 'acme', key 'connection.facets': 'queueID' is set by the routing field too; "
        "fix: remove 'queueID' from connection.facets" in str(caught.value)
    )
