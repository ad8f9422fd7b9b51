"""The tenants file: valid files load; bad ones fail at load naming tenant, key and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psatriage.config import AppConfig, Mode, load_config, parse_config
from psatriage.domain import Category, LevelValue
from psatriage.errors import ConfigError
from tests.harness import to_toml

CONNECTION = {
    "site": "api-na.myconnectwise.net",
    "company_id": "acme",
    "public_key": "env:T_PUBLIC",
    "private_key": "env:T_PRIVATE",
    "client_id": "0d6c3b1e-7f55-4b39-9f2a-4ad2f1c0a001",
}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_PUBLIC", "pub")
    monkeypatch.setenv("T_PRIVATE", "very-private-value")
    monkeypatch.setenv("T_OPENAI", "sk-secret-value")


def _tenant(**changes: Any) -> dict[str, Any]:
    tenant: dict[str, Any] = {
        "psa": "connectwise",
        "connection": dict(CONNECTION),
        "classifier": {"model": "gpt-4o-mini", "api_key": "env:T_OPENAI"},
    }
    tenant.update(changes)
    return tenant


def _load(tmp_path: Path, tenants: dict[str, Any]) -> AppConfig:
    path = tmp_path / "psatriage.toml"
    path.write_text(to_toml({"tenants": tenants}), encoding="utf-8")
    return load_config(path)


def test_a_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, {"acme": _tenant()})
    tenant = config.tenant("acme")
    assert tenant.psa == "connectwise" and tenant.classifier_kind == "openai"
    assert tenant.policy.mode is Mode.APPLY and tenant.policy.report_errors
    assert tenant.connection.private_key.get_secret_value() == "very-private-value"  # type: ignore[attr-defined]
    assert "very-private-value" not in repr(tenant) + repr(tenant.connection)
    assert "sk-secret-value" not in repr(tenant.classifier)


def test_company_overrides_accept_the_seed_variable_names(tmp_path: Path) -> None:
    tenant = _load(
        tmp_path,
        {
            "acme": _tenant(
                prompt={"instructions": "Be brief."},
                policy={"min_confidence": 0.4},
                companies={
                    "Contoso": {
                        "ai_model_ticket_cat": "gpt-4o",
                        "ticket_cat_max_tokens": 400,
                        "instructions": "VPN is 'the tunnel'.",
                        "policy": {"mode": "suggest"},
                    },
                    "250": {"model": "gpt-4.1"},
                },
            )
        },
    ).tenant("acme")
    contoso = tenant.effective("999", "contoso")
    assert (contoso.model, contoso.max_tokens) == ("gpt-4o", 400)
    assert contoso.instructions == "Be brief.\nVPN is 'the tunnel'."
    assert contoso.policy.mode is Mode.SUGGEST and contoso.policy.min_confidence == 0.4
    assert tenant.effective("250").model == "gpt-4.1"
    other = tenant.effective("1", "Fabrikam")
    assert (other.model, other.max_tokens) == ("gpt-4o-mini", 300)  # the classifier's own
    assert other.policy is tenant.policy
    assert tenant.effective("250").max_tokens == 300  # a company may override one of the two


@pytest.mark.parametrize(
    ("classifier", "model", "max_tokens"),
    [
        ({"model": "gpt-4.1", "max_tokens": 50, "api_key": "env:T_OPENAI"}, "gpt-4.1", 50),
        (
            {
                "kind": "hybrid",
                "llm": {"model": "gpt-4o", "max_tokens": 80, "api_key": "env:T_OPENAI"},
            },
            "gpt-4o",
            80,
        ),
        ({"kind": "local"}, "", 0),  # asks no LLM: nothing to name
    ],
    ids=["openai", "hybrid", "local"],
)
def test_model_and_max_tokens_default_to_the_classifier_configuration(
    tmp_path: Path, classifier: dict[str, Any], model: str, max_tokens: int
) -> None:
    tenant = _load(tmp_path, {"acme": _tenant(classifier=classifier)}).tenant("acme")
    assert (tenant.effective(None).model, tenant.effective(None).max_tokens) == (
        model,
        max_tokens,
    )


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ({"min_confidence": 2}, "policy.min_confidence"),
        ({"apply_at": -1}, "policy.apply_at"),
        ({"suggest_at": 1.5}, "policy.suggest_at"),
        ({"fields": {"category": {"apply_at": 1.5}}}, "policy.fields.category.apply_at"),
    ],
)
def test_a_confidence_out_of_range_is_one_error_under_the_key_written(
    tmp_path: Path, policy: dict[str, Any], key: str
) -> None:
    """The category's band has several spellings; a bad value is reported once, not once under
    each of the names it stands for (min_confidence, apply_at, min_confidence_to_change)."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(policy=policy)})
    errors = [line for line in str(caught.value).splitlines() if "tenant 'acme'" in line]
    assert len(errors) == 1 and f"key '{key}'" in errors[0], errors


@pytest.mark.parametrize(
    ("tenants", "expected"),
    [
        (
            {"acme": _tenant(connection={**CONNECTION, "private_key": "hunter2"})},
            ["tenant 'acme', key 'connection.private_key'", "env:NAME", "fix:"],
        ),
        (
            {"acme": _tenant(connection={**CONNECTION, "private_key": "env:T_MISSING"})},
            ["key 'connection.private_key'", "T_MISSING is not set; fix: export it"],
        ),
        (
            {"acme": _tenant(policy={"mode": "yolo"})},
            ["key 'policy.mode'", "'apply', 'suggest' or 'shadow'", "fix: use one of"],
        ),
        (
            {"acme": _tenant(policy={"min_confidence": 0.9, "min_confidence_to_change": 0.5})},
            ["key 'policy'", "min_confidence_to_change must be at least min_confidence"],
        ),
        (
            {"acme": _tenant(policy={"apply_at": 0.7, "min_confidence": 0.6})},
            [
                "key 'policy'",
                "policy.apply_at = 0.7, policy.min_confidence = 0.6 are one setting",
                "fix: keep only one of them",
            ],
        ),
        (
            {"acme": _tenant(policy={"apply_at": 0.5, "suggest_at": 0.6})},
            ["key 'policy'", "suggest_at (0.6) is above apply_at (0.5)", "fix: lower suggest_at"],
        ),
        (
            {"acme": _tenant(policy={"fields": {"category": {"apply_at": 0.9}}, "apply_at": 0.6})},
            ["key 'policy'", "fields.category.apply_at = 0.9", "fix: keep only one"],
        ),
        (
            {"acme": _tenant(policy={"fields": {"colour": {"apply_at": 0.9}}})},
            ["key 'policy.fields'", "no field named 'colour'", "fix: use one of category"],
        ),
        (
            {
                "acme": _tenant(
                    policy={"apply_at": 0.6}, companies={"x": {"policy": {"suggest_at": 0.7}}}
                )
            },
            ["tenant 'acme', key 'companies.x.policy'", "suggest_at (0.7) is above apply_at (0.6)"],
        ),
        (
            {"acme": _tenant(policy={"min_confidence": 2})},
            ["key 'policy.min_confidence'", "fix: lower the value"],
        ),
        (
            {"acme": _tenant(polcy={"mode": "apply"})},
            ["key 'polcy'", "fix: remove it or check its spelling"],
        ),
        ({"acme": _tenant(psa="servicenow")}, ["key 'psa'", "unknown PSA 'servicenow'"]),
        (
            {"acme": _tenant(classifier={"kind": "magic"})},
            ["key 'classifier.kind'", "unknown classifier 'magic'"],
        ),
        (
            {"acme": _tenant(connection={"site": "x"})},
            ["key 'connection.company_id'", "fix: add this key"],
        ),
        (
            {"acme": _tenant(prompt={"template": "{% block system %}{{ oops }}{% endblock %}"})},
            ["key 'prompt.template'", "fix: use only the variables"],
        ),
        (
            {"acme": _tenant(prompt={"note_template": "{{ category.label }} {{ secret }}"})},
            ["key 'prompt.note_template'", "secret"],
        ),
        ({"Bad Name": _tenant()}, ["tenant 'Bad Name'", "lower-case letters"]),
        (
            {"acme": _tenant(companies={"x": {"ticket_cat_max_tokens": 1}})},
            ["key 'companies.x.ticket_cat_max_tokens'"],
        ),
    ],
)
def test_bad_files_name_tenant_key_and_fix(
    tmp_path: Path, tenants: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, tenants)
    message = str(caught.value)
    for part in expected:
        assert part in message
    assert "hunter2" not in message and "very-private-value" not in message


@pytest.mark.parametrize("apply_at", ["high", [0.9], {"at": 0.9}])
def test_a_threshold_that_is_no_number_is_a_problem_not_a_crash(
    tmp_path: Path, apply_at: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(policy={"apply_at": apply_at})})
    message = str(caught.value)
    assert "tenant 'acme', key 'policy.apply_at': " in message
    assert "; fix: write a number" in message


def test_every_problem_of_every_tenant_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(
            tmp_path,
            {
                "one": _tenant(policy={"mode": "x"}),
                "two": _tenant(connection={**CONNECTION, "public_key": "plain"}),
            },
        )
    assert "tenant 'one'" in str(caught.value) and "tenant 'two'" in str(caught.value)


def test_template_file_is_read_relative_to_the_tenants_file(tmp_path: Path) -> None:
    (tmp_path / "prompt.j2").write_text(
        "{% block system %}Pick one of {{ candidates | length }}.{% endblock %}"
        "{% block user %}{{ ticket.title }}{% endblock %}"
    )
    tenant = _load(tmp_path, {"acme": _tenant(prompt={"template_file": "prompt.j2"})}).tenant(
        "acme"
    )
    assert "Pick one of" in tenant.prompt.source
    with pytest.raises(ConfigError, match="cannot read"):
        _load(tmp_path, {"acme": _tenant(prompt={"template_file": "missing.j2"})})


def test_file_secret_references(tmp_path: Path) -> None:
    secret = tmp_path / "cw.key"
    secret.write_text("from-a-file\n")
    connection = {**CONNECTION, "private_key": f"file:{secret}"}
    tenant = _load(tmp_path, {"acme": _tenant(connection=connection)}).tenant("acme")
    assert tenant.connection.private_key.get_secret_value() == "from-a-file"  # type: ignore[attr-defined]


def test_missing_file(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.toml", missing_ok=True).tenants == {}
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_not_toml_and_unknown_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[tenants\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_config({"tenant": {}})


def test_unknown_tenant_lists_the_known_ones(tmp_path: Path) -> None:
    config = _load(tmp_path, {"acme": _tenant()})
    with pytest.raises(ConfigError, match=r"no tenant named 'x' \(configured: acme\)"):
        config.tenant("x")


def test_category_descriptions_and_hints_by_key_or_path(tmp_path: Path) -> None:
    tenant = _load(
        tmp_path,
        {
            "acme": _tenant(
                taxonomy={"descriptions": {"Network": "Anything on the wire"}},
                categories={
                    "Hardware": {"hints": ["device", "toner"]},
                    "Hardware > Printer": {
                        "description": "Printers and copiers",
                        "hints": ["paper jam", "toner"],
                    },
                    "9": {"hints": ["tunnel"]},
                },
            )
        },
    ).tenant("acme")
    hardware, network = LevelValue("type", "8", "Hardware"), LevelValue("type", "9", "Network")
    printer = Category("8/1", (hardware, LevelValue("subType", "1", "Printer")))
    laptop = Category("8/2", (hardware, LevelValue("subType", "2", "Laptop")), "From the PSA")
    assert tenant.describe(printer) == "Printers and copiers (e.g. paper jam, toner, device)"
    assert tenant.describe(laptop) == "From the PSA (e.g. device, toner)"
    assert tenant.describe(Category("9", (network,))) == "Anything on the wire (e.g. tunnel)"
    other = Category("7", (LevelValue("type", "7", "Other"),), "Kept")
    assert tenant.describe(other) == "Kept"
    assert tenant.learning.examples == 3 and tenant.learning.retrain_seconds == 7 * 86400


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"categories": {"Hardware": {"hint": ["toner"]}}},
            "tenant 'acme', key 'categories.Hardware.hint': Extra inputs are not permitted",
        ),
        (
            {"categories": {"Hardware": {"hints": ["x" * 101]}}},
            "tenant 'acme', key 'categories.Hardware.hints'",
        ),
        (
            {"learning": {"retrain_every": "weekly"}},
            "tenant 'acme', key 'learning.retrain_every': 'weekly' is not a period such as 7d",
        ),
        (
            {"learning": {"examples": 11}},
            "tenant 'acme', key 'learning.examples'",
        ),
    ],
)
def test_bad_category_and_learning_keys_name_tenant_and_key(
    tmp_path: Path, changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(**changes)})
    assert says in str(caught.value)


def test_retraining_can_be_turned_off(tmp_path: Path) -> None:
    for off in ("off", "0d"):
        tenant = _load(tmp_path, {"acme": _tenant(learning={"retrain_every": off})})
        assert tenant.tenant("acme").learning.retrain_seconds is None
    hourly = _load(tmp_path, {"acme": _tenant(learning={"retrain_every": "12h"})})
    assert hourly.tenant("acme").learning.retrain_seconds == 12 * 3600


def test_connectwise_on_premise_needs_base_url_not_site(tmp_path: Path) -> None:
    on_premise = {k: v for k, v in CONNECTION.items() if k != "site"}
    on_premise["base_url"] = "https://cw.example.com/"
    tenant = _load(tmp_path, {"acme": _tenant(connection=on_premise)}).tenant("acme")
    assert tenant.connection.origin == "https://cw.example.com"  # type: ignore[attr-defined]
    del on_premise["base_url"]
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(connection=on_premise)})
    assert "tenant 'acme', key 'connection': give site" in str(caught.value)
    assert "or base_url" in str(caught.value)


def test_retention_keeps_records_at_least_as_long_as_text(tmp_path: Path) -> None:
    tenant = _load(tmp_path, {"acme": _tenant(retention_days=30, record_retention_days=365)})
    assert tenant.tenant("acme").retention_days == 30
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"acme": _tenant(retention_days=30, record_retention_days=7)})
    assert "record_retention_days must be at least retention_days" in str(caught.value)
