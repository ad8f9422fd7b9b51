"""``psatriage init``: a starter tenants file, and the next three commands to run.

On a terminal it asks for what the options did not say; otherwise the options (or their
defaults) decide, and ``--psa`` is needed. It never overwrites a file without ``--force``.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from psatriage.cli._app import app, console, fail_cleanly, settings, writable_file
from psatriage.errors import ConfigError


class Engine(StrEnum):
    OPENAI = "openai"
    LOCAL = "local"


# The connection table of each PSA: what must be filled in, with secrets as env references.
# ``{env}`` is the tenant's prefix for variable names (ACME for tenant acme).
_CONNECTIONS = {
    "connectwise": """\
site = "api-na.myconnectwise.net"        # fill in: api-na, api-eu, api-au (or sandbox-*)
company_id = "your-company-id"           # fill in: the company id you type when logging in
public_key = "env:{env}_CW_PUBLIC_KEY"    # the API member's keys (docs/connectwise.md, 1)
private_key = "env:{env}_CW_PRIVATE_KEY"
client_id = "00000000-0000-0000-0000-000000000000"  # fill in: yours, developer.connectwise.com
""",
    "autotask": """\
username = "psatriage@example.com"       # fill in: the API user (docs/autotask.md, 1)
secret = "env:{env}_AT_SECRET"
integration_code = "env:{env}_AT_TRACKING_ID"
webhook_secret = "env:{env}_AT_WEBHOOK_SECRET"  # 1-64 characters you choose; signs deliveries
""",
    "halopsa": """\
url = "https://your-company.halopsa.com"  # fill in: your Halo web address
client_id = "your-client-id"              # fill in: the API application (docs/halopsa.md, 1)
client_secret = "env:{env}_HALO_CLIENT_SECRET"
webhook_secret = "env:{env}_HALO_WEBHOOK_SECRET"  # signs Halo's webhook calls (HMAC)
""",
    "kaseya_bms": """\
username = "psatriage-api"               # fill in: the API user (docs/kaseya-bms.md, 1)
password = "env:{env}_BMS_PASSWORD"
company = "Your Company"                 # fill in: the BMS tenant you log in with
region = "us"                            # us, emea, apac or vorex
""",
}

_PLACEHOLDER = re.compile(r'^(\w+) = "([^"]+)"\s+# fill in: (.+)$')
_PLAUSIBLE = {"api-na.myconnectwise.net", "psatriage-api"}  # may well be the right values


def placeholders(psa: str) -> dict[str, tuple[str, str]]:
    """The connection keys ``init`` writes for ``psa`` with a value to replace: key -> (that
    value, what to fill in)."""
    found = {}
    for line in _CONNECTIONS.get(psa, "").splitlines():
        match = _PLACEHOLDER.match(line)
        if match and match.group(2) not in _PLAUSIBLE:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


_CLASSIFIERS = {
    Engine.OPENAI: """\
[tenants.{tenant}.classifier]            # Azure OpenAI, Ollama, vLLM: docs/configuration.md
model = "gpt-4o-mini"
api_key = "env:OPENAI_API_KEY"
""",
    Engine.LOCAL: """\
[tenants.{tenant}.classifier]
kind = "local"                           # offline: no key, nothing leaves this machine
# model = "auto"                         # the newest `psatriage train --tenant` model
""",
}

_FILE = """\
# psatriage tenants file: every key is in docs/configuration.md.
# Secrets are references, never values: env:NAME (a variable) or file:PATH.

[tenants.{tenant}]
psa = "{psa}"
# trigger = "{trigger}"                 # the default; "webhook", "poll" or "both"

[tenants.{tenant}.connection]
{connection}
{classifier}
[tenants.{tenant}.policy]
mode = "suggest"                         # note only; "apply" writes the category, "shadow" records
"""


@app.command("init")
def init_command(
    psa: Annotated[
        str | None,
        typer.Option(help=f"The PSA: {', '.join(sorted(_CONNECTIONS))}.", show_default=False),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", "-t", help="The tenant's name (in its webhook URL). [default: main]"
        ),
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(help="openai (an API key) or local (offline). [default: openai]"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter tenants file (psatriage.toml, or --config PATH) and print what to run
    next. On a terminal, asks for what the options leave out."""
    current = settings()
    path = current.config
    with fail_cleanly():
        if path.exists() and not force:
            raise ConfigError(f"{path} exists already; fix: pass --force to overwrite it")
        writable_file(path, "the tenants file")
        asking = sys.stdin.isatty()
        kind = _psa(psa, asking)
        name = _tenant(tenant, asking)
        chosen = engine or _ask_engine(asking)
        text = starter(kind, name, chosen)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    _next_steps(path, kind, name, text, default_path=current.config_is_default)


def starter(psa: str, tenant: str, engine: Engine) -> str:
    """The tenants file ``init`` writes: valid once the variables it names are set."""
    from psatriage.psa import adapters

    env = tenant.upper().replace("-", "_")
    return _FILE.format(
        tenant=tenant,
        psa=psa,
        trigger=adapters()[psa].default_trigger,
        connection=_CONNECTIONS[psa].format(env=env),
        classifier=_CLASSIFIERS[engine].format(tenant=tenant),
    )


def _psa(given: str | None, asking: bool) -> str:
    from psatriage.psa import adapters

    known = sorted(adapters())
    if given is None and not asking:
        raise ConfigError(f"not on a terminal: give --psa, one of {', '.join(known)}")
    answer = given if given is not None else _ask("PSA", known, "connectwise")
    if answer not in known:
        raise ConfigError(
            f"--psa {answer!r} is not a PSA psatriage knows; fix: use one of {', '.join(known)}"
        )
    return answer


def _tenant(given: str | None, asking: bool) -> str:
    from psatriage.config import TENANT_NAME

    answer: str = (
        "main" if given is None and not asking else given or typer.prompt("Tenant name", "main")
    )
    if not TENANT_NAME.match(answer):
        raise ConfigError(
            f"--tenant {answer!r}: use lower-case letters, digits, '-' and '_' (at most 63); "
            "it appears in the webhook URL"
        )
    return answer


def _ask_engine(asking: bool) -> Engine:
    if not asking:
        return Engine.OPENAI
    return Engine(_ask("Model (openai: an API key; local: offline)", list(Engine), "openai"))


def _ask(question: str, choices: list[str], default: str) -> str:
    def checked(answer: str) -> str:
        if answer not in choices:
            raise typer.BadParameter(f"one of {', '.join(choices)}")
        return answer

    shown = f"{question} ({', '.join(choices)})"
    answer: str = typer.prompt(shown, default=default, value_proc=checked)
    return answer


def _next_steps(path: Path, psa: str, tenant: str, text: str, *, default_path: bool) -> None:
    from psatriage.psa import adapters

    variables = sorted(set(re.findall(r'"env:([A-Z0-9_]+)"', text)))
    command = "psatriage" if default_path else f"psatriage --config {path}"
    console.print(f"wrote {path}: tenant {tenant!r} on {psa}", highlight=False)
    console.print('fill in the values marked "fill in", then set:', highlight=False)
    console.print("  " + " ".join(f"{v}=…" for v in variables), highlight=False)
    third = (
        f"{command} serve"
        if adapters()[psa].default_trigger == "poll"
        else f"{command} webhooks register --tenant {tenant} --url https://HOST/webhooks/{tenant}"
    )
    console.print("next:", highlight=False)
    for step in (
        f"{command} config check",
        f"{command} categorize --tenant {tenant} --ticket ID --dry-run",
        third,
    ):
        console.print(f"  {step}", highlight=False)
