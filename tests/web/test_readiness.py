"""``/readyz`` shows what each tenant's model server was found to support, without calling it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from psatriage import jobs
from psatriage.classifiers import _openai_capabilities
from psatriage.domain import TicketEvent
from psatriage.store.tables import EventState
from psatriage.web import create_app
from tests.harness import TENANT, Harness


def test_readiness_shows_the_model_servers_capabilities(harness: Harness) -> None:
    _openai_capabilities.forget()  # a port seen by an earlier test may have been another fake
    harness.llm.like("llama.cpp")
    harness.tenant["classifier"] |= {"provider": "compatible", "model": "smollm2"}
    del harness.tenant["classifier"]["api_key"]
    runtime = harness.runtime()
    try:
        with TestClient(create_app(runtime)) as client:
            before = client.get("/readyz").json()["models"][TENANT]
            assert before["status"].startswith("not probed yet")
            assert harness.llm.probes == []  # readiness never calls the model

            ticket = harness.cw.add_ticket("Printer", "My printer has a paper jam")
            event_id, _ = runtime.ledger.record(
                TicketEvent(TENANT, str(ticket), "added", True, "k1"), state=EventState.RECEIVED
            )
            assert jobs.process_event(runtime, event_id) is EventState.DONE

            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["models"][TENANT] == {
                "server": f"{harness.llm.url}/v1",
                "model": "smollm2",
                "structured_output": "json_object_schema",
                "logprobs": "yes, with top_logprobs",
                "notes": "response_format json_schema refused (HTTP 500); "
                "log-probs returned only with top_logprobs",
            }
    finally:
        runtime.close()
