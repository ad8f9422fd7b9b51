"""ConnectWise callbacks: which signing-key URLs may be fetched, the key cache, the ``Entity``
(and the snapshot of the ticket kept from it).

A callback is signed with ``x-content-signature`` = base64(HMAC-SHA256(SHA-256(signing key),
body)); the key is served (unauthenticated) at the callback's ``Metadata.key_url``, which is
fetched only from ConnectWise's cloud key hosts over HTTPS or from an origin the tenant trusts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from psatriage.errors import AuthFailed, PermanentError, WebhookRejected
from psatriage.psa.wire import lower_keys, record_id, trusted_url

_KEY_SUBDOMAINS = ("api-na", "api-eu", "api-au", "sandbox-na", "sandbox-eu", "sandbox-au")
KEY_HOSTS = frozenset(f"{sub}.myconnectwise.net" for sub in (*_KEY_SUBDOMAINS, "na", "eu", "au"))


def key_url_allowed(key_url: str, trusted_origins: Iterable[str] = ()) -> bool:
    """Whether a callback's ``Metadata.key_url`` may be fetched (a guard against SSRF).

    HTTPS on a known ConnectWise cloud host, or an origin the tenant configured; never a URL
    with credentials in it.
    """
    return _key_url_allowed(key_url, tuple(trusted_origins))


@functools.lru_cache(maxsize=1024)
def _key_url_allowed(key_url: str, trusted_origins: tuple[str, ...]) -> bool:
    # remembered: parsing a URL costs more than the rest of a callback's check, and a tenant's
    # callbacks name one key URL or a few (bounded: unsigned callbacks may name any)
    if any(c in key_url for c in "\\ \t\r\n"):
        return False
    return trusted_url(
        key_url,
        origins=trusted_origins,
        https_host=lambda url: url.port in (None, 443) and url.host in KEY_HOSTS,
    )


class SigningKeys:
    """SHA-256 of each ``key_url``'s signing key, fetched once per process even by concurrent
    callbacks (other key URLs are not held up), and checks of signatures made with them."""

    def __init__(
        self,
        fetch: Callable[[str], httpx.Response],
        raise_for: Callable[[httpx.Response, str], None],
    ) -> None:
        self._fetch, self._raise_for = fetch, raise_for
        self._keys: dict[str, bytes] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def check(self, key_url: str, body: bytes, signature: str) -> None:
        """``WebhookRejected(401)`` unless ``signature`` signs ``body`` with ``key_url``'s key."""
        digest = hmac.new(self._key(key_url), body, hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest), signature.strip().encode()):
            raise WebhookRejected("the x-content-signature does not match the body", status=401)

    def cached(self, key_url: str) -> bool:
        """Whether ``key_url``'s key is known here (checking a signature needs no fetch)."""
        return key_url in self._keys

    def _key(self, key_url: str) -> bytes:
        key = self._keys.get(key_url)
        if key is not None:
            return key
        with self._lock:
            lock = self._key_locks.setdefault(key_url, threading.Lock())
        with lock:  # one fetch per key_url; other key_urls are not held up
            key = self._keys.get(key_url)
            if key is None:
                key = hashlib.sha256(self._signing_key(key_url).encode()).digest()
                self._keys[key_url] = key
            return key

    def _signing_key(self, key_url: str) -> str:
        response = self._fetch(key_url)
        try:
            self._raise_for(response, "the callback signing key")
            key = lower_keys(response.json()).get("signing_key")
        except (PermanentError, AuthFailed, ValueError) as exc:
            raise WebhookRejected("the callback signing key could not be fetched") from exc
        if not isinstance(key, str) or not key:
            raise WebhookRejected("the callback signing key response has no signing_key")
        return key


def entity_of(value: object) -> dict[str, Any]:
    """``Entity`` is the record serialized as a JSON string; it may be null, empty or unreadable."""
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return lower_keys(value)


_SNAPSHOT_REFS = ("board", "company", "type", "subtype", "item")


def ticket_snapshot(ticket_id: str, entity: Mapping[str, Any]) -> dict[str, Any] | None:
    """What of an ``added`` callback's ``Entity`` stands in for ``GET service/tickets/{id}``:
    the summary and the references a ``Ticket`` is built from (board, company, type, subtype,
    item; each reduced to its id and name), with lower-case keys. None when the entity is not
    plainly that ticket: another id, no summary, no board, or a reference of the wrong shape."""
    if record_id(entity.get("id")) != ticket_id:
        return None
    summary = entity.get("summary")
    if not isinstance(summary, str):
        return None
    snapshot: dict[str, Any] = {"id": int(ticket_id), "summary": summary}
    for name in _SNAPSHOT_REFS:
        value = entity.get(name)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            return None
        ref = lower_keys(value)
        ref_id = record_id(ref.get("id"))
        if ref_id is None:
            return None
        snapshot[name] = {"id": int(ref_id)}
        if ref.get("name") is not None:
            snapshot[name]["name"] = str(ref["name"])
    return snapshot if "board" in snapshot else None
