"""Operator commands: ``config check``, ``db upgrade``, ``webhooks register``, ``taxonomy show``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from psatriage.cli._app import app, console, errors, fail_cleanly, runtime, settings
from psatriage.errors import ConfigError, PsatriageError

if TYPE_CHECKING:
    from psatriage.config import Tenant
    from psatriage.psa.base import PSAAdapter
    from psatriage.runtime import Runtime
    from psatriage.settings import Settings

config_app = typer.Typer(help="Check the tenants file.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks in the PSA.", no_args_is_help=True)
taxonomy_app = typer.Typer(help="The PSA's category trees.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(taxonomy_app, name="taxonomy")

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name in the file.")]


@config_app.command("check")
def config_check(
    offline: Annotated[
        bool, typer.Option("--offline", help="Validate the file only; call nothing.")
    ] = False,
) -> None:
    """Validate the tenants file, then test each tenant's PSA connection and send its model the
    real request (what the server supports is shown; what it lacks fails, naming the setting)."""
    from psatriage.config import load_config

    current = settings()
    with fail_cleanly():
        config = load_config(current.config)
    console.print(f"{current.config}: {len(config.tenants)} tenant(s), file is valid")
    unfilled = [line for name in sorted(config.tenants) for line in _unfilled(config.tenant(name))]
    for line in unfilled:
        errors.print(line, soft_wrap=True, highlight=False)
    if offline or not config.tenants:
        if unfilled:
            raise typer.Exit(1)
        return
    table = Table("tenant", "PSA", "model", title="connections")
    models: list[tuple[str, Text]] = []
    fields: list[str] = []
    broken = False
    with fail_cleanly(current):
        fresh = _new_database(current)
    # an existing database is left as it is (its upgrade is `psatriage db upgrade`'s); a new one
    # is created, since the local engine's check reads its model versions there
    with runtime(migrate=fresh) as built:
        for name in sorted(config.tenants):
            psa_ok, psa = _check(lambda name=name: built.adapter(name).check_connection())
            if psa_ok:
                found, lines = _fields_check(config.tenant(name), built.adapter(name))
                psa_ok, fields = psa_ok and found, fields + lines
            model_ok, model = _check(lambda name=name: built.classifier(name).check_connection())
            broken |= not (psa_ok and model_ok)
            table.add_row(
                name,
                psa,
                Text("ok", "green") if model_ok else Text(model.plain.split(":")[0], "red"),
            )
            models.append((name, model))
        unknown = [
            line
            for name in sorted(config.tenants)
            if config.tenants[name].categories
            for line in _unknown_categories(built, name)
        ]
    console.print(table)
    for name, model in models:  # long lines: printed whole, not squeezed into a column
        for line in model.plain.splitlines():
            console.print(f"{name} model: {line}", soft_wrap=True, highlight=False)
    for line in fields:
        console.print(line, soft_wrap=True, highlight=False)
    for line in unknown:
        errors.print(line, soft_wrap=True, highlight=False)
    if broken or unknown or unfilled:
        raise typer.Exit(1)


def _unfilled(tenant: Tenant) -> list[str]:
    """A line per connection key that still holds the placeholder `psatriage init` wrote."""
    from psatriage.cli.init import placeholders

    return [
        f"tenant {tenant.name!r}, key 'connection.{key}': still {value!r}, as init wrote it; "
        f"fix: fill in {what}"
        for key, (value, what) in placeholders(tenant.psa).items()
        if str(getattr(tenant.connection, key, "")) == value
    ]


def _fields_check(tenant: Tenant, adapter: PSAAdapter[Any]) -> tuple[bool, list[str]]:
    """The fields' names looked up in the PSA's live values: whether all were found, and why
    not."""
    from psatriage.fields import live

    try:
        lines = live.problems(tenant, adapter)
    except PsatriageError as exc:
        lines = [f"tenant {tenant.name!r}, key 'fields': the live values: {exc}"]
    return not lines, lines


def _unknown_categories(built: Runtime, name: str) -> list[str]:
    """A line per ``categories`` key of the tenant that names no category of its PSA's trees."""
    from psatriage.config import category_matches
    from psatriage.domain import Category, Ticket

    tenant = built.tenant(name)
    try:
        adapter = built.adapter(name)
        leaves: list[Category] = []
        for scope_id, scope_name in adapter.list_scopes() or [("", "")]:
            probe = Ticket(id="", title="", description="", scope=scope_id, scope_name=scope_name)
            leaves += adapter.get_taxonomy(probe).leaves
    except PsatriageError as exc:
        return [f"tenant {name!r}, key 'categories': cannot read the category trees: {exc}"]
    return [
        f"tenant {name!r}, key 'categories.\"{pattern}\"': names no category of the PSA's "
        f"category trees; fix: use a key or a path prefix shown by 'psatriage taxonomy show "
        f"--tenant {name}'"
        for pattern in tenant.categories
        if not any(category_matches(leaf, pattern) for leaf in leaves)
    ]


def _new_database(current: Settings) -> bool:
    """Whether the database has no tables of psatriage yet (never migrated)."""
    from psatriage.store import db

    engine = db.make_engine(current.effective_database_url)
    try:
        return db.current_revision(engine) is None
    finally:
        engine.dispose()


def _check(call: Callable[..., str]) -> tuple[bool, Text]:
    try:
        return True, Text.assemble(("ok", "green"), f" {call()}")
    except PsatriageError as exc:
        return False, Text.assemble((type(exc).__name__, "red"), f": {exc}")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (docs/configuration.md) generated from the models."""
    from psatriage.docgen import configuration_reference

    print(configuration_reference(), end="")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the newest migration."""
    from psatriage.store import db

    current = settings()
    with fail_cleanly(current):
        engine = db.make_engine(current.effective_database_url)
        try:
            db.upgrade(engine)
            console.print(f"database at revision {db.current_revision(engine)}")
        finally:
            engine.dispose()


@webhooks_app.command("register")
def webhooks_register(
    tenant: TenantOption,
    url: Annotated[str, typer.Option(help="Public URL of /webhooks/TENANT on this service.")],
) -> None:
    """Create the webhook (callback) in the tenant's PSA that calls URL."""
    with runtime() as built:
        _check_webhook_url(tenant, url)
        webhook_id = built.adapter(tenant).register_webhook(url)
        console.print(f"registered: {webhook_id}")


def _check_webhook_url(tenant: str, url: str) -> None:
    """Refuse what is no web address; warn when the PSA's calls would not reach the tenant."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--url {url!r} is not a web address; fix: --url https://HOST/webhooks/{tenant}"
        )
    if not parts.path.rstrip("/").endswith(f"/webhooks/{tenant}"):
        errors.print(
            f"warning: {url} does not end in /webhooks/{tenant}: the PSA's calls reach tenant "
            f"{tenant!r} only if a proxy forwards them there",
            highlight=False,
        )
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        errors.print(
            f"warning: {url} is not HTTPS: the PSA sends tickets in the clear (docs/deploy.md, "
            "TLS behind a reverse proxy)",
            highlight=False,
        )


@taxonomy_app.command("show")
def taxonomy_show(
    tenant: TenantOption,
    board: Annotated[
        str | None, typer.Option(help="Board (scope) id or name; all when omitted.")
    ] = None,
) -> None:
    """Print the category leaves the model can choose from."""
    from psatriage.domain import Ticket

    with runtime() as built:
        adapter = built.adapter(tenant)
        scopes = adapter.list_scopes()
        if board is not None:
            wanted = [s for s in scopes if board in s or board.casefold() == s[1].casefold()]
            scopes = wanted or [(board, board)]
        if not scopes:
            raise ConfigError(f"tenant {tenant!r}: the PSA lists no boards; pass --board ID")
        for scope_id, scope_name in scopes:
            probe = Ticket(id="", title="", description="", scope=scope_id, scope_name=scope_name)
            taxonomy = adapter.get_taxonomy(probe)
            table = Table(
                "key", "category", "active", "PSA default", title=f"{scope_name} ({scope_id})"
            )
            for leaf in taxonomy.leaves:
                default = all((v.level, v.id) in taxonomy.defaults for v in leaf.path)
                table.add_row(
                    leaf.key, leaf.label, "yes" if leaf.active else "no", "yes" if default else ""
                )
            console.print(table)
            if not taxonomy.leaves:
                errors.print(f"{scope_name}: no active categories")
