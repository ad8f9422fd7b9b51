"""Each tenant's effective configuration, read-only with secrets masked, and its connection check
(``psatriage config check``: one cheap call to the PSA and one to the model)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, SecretStr

from psatriage.config import Tenant
from psatriage.store.users import Role
from psatriage.web.console.core import (
    NavItem,
    PageNotFound,
    SignedIn,
    console_of,
    csrf_guard,
    require,
    signed_in,
)

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)
NAV = NavItem("Tenants", "/tenants")
MASK = "•••••• (set)"


@router.get("/tenants", response_class=HTMLResponse)
def tenants(request: Request, user: Annotated[SignedIn, Depends(signed_in)]) -> HTMLResponse:
    console = console_of(request)
    config = console.runtime.config
    rows = [(config.tenants[name], console.health.cached(name)) for name in sorted(config.tenants)]
    return console.render(
        request, "tenants.html", {"rows": rows, "source": config.source}, user=user
    )


@router.get("/tenants/{name}", response_class=HTMLResponse)
def tenant(
    request: Request, name: str, user: Annotated[SignedIn, Depends(signed_in)]
) -> HTMLResponse:
    console = console_of(request)
    found = console.runtime.config.tenants.get(name)
    if found is None:
        raise PageNotFound(f"There is no tenant named {name!r}.")
    return console.render(
        request,
        "tenant.html",
        {
            "tenant": found,
            "sections": sections(found),
            "check": console.health.cached(name),
            "may_check": user.may(Role.ADMIN),
            "problems": console.runtime.problems().get(name, []),
        },
        user=user,
    )


@router.post("/tenants/{name}/check")
def check_now(
    request: Request,
    name: str,
    user: Annotated[SignedIn, Depends(require(Role.ADMIN, "run connection checks"))],
) -> Response:
    console = console_of(request)
    if name not in console.runtime.config.tenants:
        raise PageNotFound(f"There is no tenant named {name!r}.")
    console.health.refresh(name)
    console.audit.record(user.name, "tenant_check", name, address=console.address(request))
    return RedirectResponse(f"/tenants/{name}", status_code=303)


def sections(tenant: Tenant) -> list[tuple[str, list[tuple[str, str]]]]:
    """The tenant's settings as the service uses them, grouped as in the tenants file."""
    general = {
        "psa": tenant.psa,
        "trigger": tenant.trigger.value,
        "poll_seconds": tenant.poll_seconds,
        "poll_overlap_seconds": tenant.poll_overlap_seconds,
        "replay_window_seconds": tenant.replay_window_seconds,
    }
    prompt = {
        "instructions": tenant.instructions,
        "template (hash)": tenant.prompt.hash,
        "template": tenant.prompt.source,
        "note_template": tenant.note.source,
        "error_note_template": tenant.error_note.source,
    }
    privacy = {"redact": tenant.redactor.enabled, "patterns": sorted(tenant.redactor.patterns)}
    companies = {
        key: value.model_dump(exclude_defaults=True) for key, value in tenant.companies.items()
    }
    return [
        ("tenant", _rows(general)),
        ("connection", _rows(_fields(tenant.connection))),
        ("classifier", _rows({"kind": tenant.classifier_kind, **_fields(tenant.classifier)})),
        ("policy", _rows(_fields(tenant.policy))),
        ("prompt", _rows(prompt)),
        ("taxonomy", _rows(_fields(tenant.taxonomy))),
        ("privacy", _rows(privacy)),
        ("companies", _rows(companies)),
    ]


def _fields(model: BaseModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in type(model).model_fields}


def _rows(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(key, _shown(value)) for key, value in values.items()]


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else "—"
    if value is None or value in ("", (), [], {}):
        return "—"
    if isinstance(value, BaseModel):
        return _shown(_fields(value))
    if isinstance(value, Mapping):
        return json.dumps({k: _plain(v) for k, v in value.items()}, indent=1, default=str)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(_plain(item)) for item in value)
    return str(getattr(value, "value", value))


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in _fields(value).items()}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return getattr(value, "value", value)
