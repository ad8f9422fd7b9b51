"""The offline local engine: zero-shot, trained models, the model store and its file format."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from psatriage.classifiers.base import ClassificationRequest
from psatriage.classifiers.local import LocalClassifier, LocalConfig
from psatriage.config import parse_config
from psatriage.domain import Category, Facet, LevelValue, ModelCall, Ticket
from psatriage.errors import ConfigError, PermanentError
from psatriage.local_engine import DataError
from psatriage.local_engine.data import labeled, read_examples, read_taxonomy
from psatriage.local_engine.embed import content_words, shared_embedder
from psatriage.local_engine.features import prepare
from psatriage.local_engine.model import TrainedModel
from psatriage.local_engine.store import ModelStore
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "local"
PROMPT = compile_prompt(DEFAULT_PROMPT)


def _request(
    title: str,
    description: str = "",
    candidates: tuple[Category, ...] | None = None,
    *,
    calls: list[ModelCall] | None = None,
    facets: tuple[Facet, ...] = (),
) -> ClassificationRequest:
    return ClassificationRequest(
        tenant="acme",
        ticket=Ticket(id="7", title=title, description=description, scope="1"),
        candidates=candidates if candidates is not None else read_taxonomy(_taxonomy()).leaves,
        prompt=PROMPT,
        model="ignored",
        max_tokens=0,
        facets=facets,
        record=calls.append if calls is not None else (lambda _: None),
    )


def _taxonomy() -> Path:
    return FIXTURES / "taxonomy.toml"


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    pairs = labeled(read_examples(FIXTURES / "tickets.jsonl"), "category", FIXTURES)
    return train(
        [e.text for e, _ in pairs], [v for _, v in pairs], shared_embedder(), label="category"
    )


def test_zero_shot_picks_the_closest_category_and_records_one_call() -> None:
    calls: list[ModelCall] = []
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    result = classifier.classify(_request("Printer on the third floor keeps jamming", calls=calls))
    assert result.key == "Hardware > Printer"
    assert 0 < result.confidence <= 1
    assert result.confidence_source == "model" and result.engine == "local"
    assert result.model.startswith("zero-shot:wordllama")
    assert "zero-shot" in result.reasoning and "Next:" in result.reasoning
    assert len(calls) == 1
    call = calls[0]
    assert (call.engine, call.tokens_in, call.tokens_out, call.cost_usd) == ("local", 0, 0, 0.0)
    assert call.chosen_key == "Hardware > Printer" and call.error is None


def test_the_call_row_counts_what_was_masked() -> None:
    calls: list[ModelCall] = []
    request = dataclasses.replace(
        _request("Printer jams, call 555-0100", calls=calls),
        redactions={"phone": 1},
        taxonomy_hash="tax1",
        event_id=3,
    )
    LocalClassifier("acme", LocalConfig(model="zero-shot")).classify(request)
    assert calls[0].redactions == {"phone": 1}
    assert (calls[0].taxonomy_hash, calls[0].event_id, calls[0].ticket_id) == ("tax1", 3, "7")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("I forgot my password and my account is locked", "Accounts > Password"),
        ("VPN keeps disconnecting when I work from home", "Network > VPN"),
        ("Outlook crashes when I open the calendar", "Email > Outlook"),
    ],
)
def test_zero_shot_on_plain_tickets(title: str, expected: str) -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    assert classifier.classify(_request(title)).key == expected


def test_no_candidates_is_a_permanent_error() -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    with pytest.raises(PermanentError, match="no candidate"):
        classifier.classify(_request("anything", candidates=()))


def test_facets_are_chosen_among_their_options() -> None:
    queue = Facet(
        "queue",
        "Queue",
        (LevelValue("queue", "1", "Service desk"), LevelValue("queue", "2", "Network team")),
    )
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    result = classifier.classify(_request("the vpn tunnel to the network", facets=(queue,)))
    assert result.facets["queue"] in {"1", "2"}


def test_trained_model_report_keeps_rare_classes_zero_shot(model: TrainedModel) -> None:
    report = model.report
    assert set(model.classes) == {
        "Hardware/Printer",
        "Accounts/Password",
        "Network/VPN",
        "Email/Outlook",
    }
    assert report.zero_shot == {"Security/Phishing": 1}
    assert report.examples == 64 and report.classes == 4
    assert report.cv_accuracy > 0.8
    assert 0 <= report.cv_ece <= 1 and report.temperature > 0


def test_trained_probabilities_are_calibrated_rows(model: TrainedModel) -> None:
    embedder = shared_embedder()
    tickets = [prepare("printer jam on floor two"), prepare("outlook will not open")]
    probabilities = model.probabilities(tickets, embedder.embed([t.text for t in tickets]))
    assert probabilities.shape == (2, 4)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    best = [model.classes[i] for i in probabilities.argmax(axis=1)]
    assert best == ["Hardware/Printer", "Email/Outlook"]


def test_store_versions_and_auto_loads_the_newest(model: TrainedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = store.save("acme", model)
    second = store.save("acme", model)
    assert (first.name, second.name) == ("v0001.npz", "v0002.npz")
    assert json.loads(second.with_suffix(".json").read_text())["version"] == "v0002"
    classifier = LocalClassifier("acme", LocalConfig(models_dir=tmp_path))
    result = classifier.classify(_request("printer jam", "paper stuck in the tray"))
    assert result.key == "Hardware > Printer"  # model classes matched to keys by path names
    assert result.model == "trained:v0002"
    assert "trained model" in result.reasoning


def test_a_newer_model_is_picked_up_without_restart(model: TrainedModel, tmp_path: Path) -> None:
    classifier = LocalClassifier("acme", LocalConfig(models_dir=tmp_path, reload_seconds=0))
    assert classifier.ranker().name.startswith("zero-shot:")
    ModelStore(tmp_path).save("acme", model)
    assert classifier.ranker().name == "trained:v0001"


def test_unseen_categories_fall_back_to_zero_shot(model: TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    model.save(path)
    classifier = LocalClassifier("acme", LocalConfig(model=str(path), unseen_weight=1.0))
    ranked = classifier.ranker().rank(
        "phishing email asking for bank details", read_taxonomy(_taxonomy()).leaves
    )
    sources = {s.category.key: s.source for s in ranked}
    assert sources["Security > Phishing"] == "zero-shot"
    assert sources["Hardware > Printer"] == "model"
    assert abs(sum(s.probability for s in ranked) - 1) < 1e-5


def test_model_file_round_trip(model: TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = TrainedModel.load(path)
    assert loaded.classes == model.classes and loaded.report == model.report
    tickets = [prepare("vpn keeps dropping")]
    vectors = shared_embedder().embed([t.text for t in tickets])
    assert np.allclose(loaded.scores(tickets, vectors), model.scores(tickets, vectors), atol=1e-5)


def test_model_from_another_version_is_refused(model: TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    header = json.loads(str(arrays["header"]))
    header["format_version"] = 99
    arrays["header"] = np.array(json.dumps(header))
    with path.open("wb") as out:
        np.savez(out, **arrays)
    with pytest.raises(DataError, match=r"old\.npz was written by another version.*train again"):
        TrainedModel.load(path)


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_a_broken_model_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.npz is not a psatriage model file"):
        TrainedModel.load(path)
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("x.npy", b"")
    with pytest.raises(ConfigError, match=r"other\.npz"):
        TrainedModel.load(other)


def test_missing_model_file_fails_when_used(tmp_path: Path) -> None:
    calls: list[ModelCall] = []
    classifier = LocalClassifier("acme", LocalConfig(model=str(tmp_path / "none.npz")))
    with pytest.raises(ConfigError, match=r"none\.npz does not exist"):
        classifier.classify(_request("printer", calls=calls))
    assert calls[0].error is not None and calls[0].chosen_key is None


def test_too_little_data_to_train() -> None:
    with pytest.raises(DataError, match="at least two categories with 3 or more"):
        train(["a printer", "b printer", "c vpn"], ["x", "x", "y"], shared_embedder())


def test_config_refuses_an_llm_model_name() -> None:
    with pytest.raises(ValidationError, match="neither 'auto', 'zero-shot' nor a model file"):
        LocalConfig(model="gpt-4o-mini")
    with pytest.raises(ValidationError):
        LocalConfig.model_validate({"api_key": "env:X"})


def test_tenants_file_accepts_kind_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P", "public")
    monkeypatch.setenv("Q", "private")
    config = parse_config(
        {
            "tenants": {
                "acme": {
                    "psa": "connectwise",
                    "connection": {
                        "site": "api-na.myconnectwise.net",
                        "company_id": "acme",
                        "public_key": "env:P",
                        "private_key": "env:Q",
                        "client_id": "00000000-0000-0000-0000-000000000000",
                    },
                    "classifier": {"kind": "local", "model": "zero-shot"},
                }
            }
        }
    )
    tenant = config.tenant("acme")
    assert tenant.classifier_kind == "local"
    assert isinstance(tenant.classifier, LocalConfig)


def test_check_connection_and_content_words() -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    assert "offline engine ready" in classifier.check_connection()
    assert content_words("Hi, the Printer is NOT working! Thanks") == "printer working"


def test_an_unreadable_ticket_says_so_and_favours_no_category() -> None:
    classifier = LocalClassifier("acme", LocalConfig(model="zero-shot"))
    result = classifier.classify(_request("打印机卡纸", "纸张卡在纸盒里"))
    assert "no word it can read" in result.reasoning
    assert result.confidence == pytest.approx(1 / 5)
