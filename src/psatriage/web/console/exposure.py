"""Whether ``psatriage serve`` may bind an address: beyond this machine, somebody must have to
sign in (a console user or single sign-on) or hold the API token, unless ``--insecure``."""

from __future__ import annotations

import ipaddress

from psatriage.runtime import Runtime
from psatriage.store.users import Users
from psatriage.web.console.settings import ConsoleSettings


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (a name other than localhost is
    taken as reachable from others)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(host: str, runtime: Runtime, settings: ConsoleSettings) -> str | None:
    """Why binding ``host`` is refused, or None."""
    if is_loopback(host):
        return None
    if runtime.settings.api_token is not None or settings.oidc_enabled:
        return None
    if Users(runtime.sessions).count():
        return None
    return (
        f"refusing to serve on {host}, reachable from other machines, with no way to sign in: "
        "nobody would need to sign in to the API; fix: add a console user "
        "(psatriage users add NAME --role admin), set up single sign-on (PSATRIAGE_OIDC_ISSUER) "
        "or set PSATRIAGE_API_TOKEN; or pass --insecure if another layer guards it"
    )
