"""The fake Autotask's data: picklists as ``entityInformation/fields`` lists them, the .NET
serialization Autotask signs, and the query conditions it understands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.fakes.base import Response

PICKLIST_FIELDS = ("issueType", "subIssueType", "queueID", "priority", "ticketCategory", "status")
_NET_ESCAPED = frozenset("&<>'\"`+")
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_NOT_ENDPOINT = frozenset({"query", "next", "entityInformation", "fields"})
BASE_TIME = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pick(
    value: int,
    label: str,
    *,
    active: bool = True,
    default: bool = False,
    parent: int | None = None,
    sort: int = 0,
    system: bool = False,
) -> dict[str, Any]:
    """One ``PickListValue`` as the live API writes it (value and parent as strings)."""
    return {
        "value": str(value),
        "label": label,
        "isDefaultValue": default,
        "sortOrder": sort,
        "parentValue": "" if parent is None else str(parent),
        "isActive": active,
        "isSystem": system,
    }


def field_info(
    name: str, values: list[dict[str, Any]] | None = None, *, parent_field: str = ""
) -> dict[str, Any]:
    """One ``FieldInformation`` entry (a picklist when ``values`` is given)."""
    return {
        "name": name,
        "dataType": "integer" if values is not None else "string",
        "length": 0,
        "isRequired": False,
        "isReadOnly": False,
        "isQueryable": True,
        "isReference": False,
        "referenceEntityType": "",
        "isPickList": values is not None,
        "picklistValues": values,
        "picklistParentValueField": parent_field,
        "isSupportedWebhookField": values is not None,
    }


def dotnet_json(value: Any) -> str:
    """JSON as Autotask's .NET serializer writes it: compact, HTML characters escaped."""
    if isinstance(value, str):
        return '"' + "".join(_net_char(c) for c in value) + '"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{dotnet_json(k)}:{dotnet_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dotnet_json(v) for v in value) + "]"
    return json.dumps(value)


def _net_char(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char in _NET_ESCAPED or ord(char) > 127 or ord(char) < 0x20:
        units = char.encode("utf-16-be")
        return "".join(
            f"\\u{int.from_bytes(units[i : i + 2], 'big'):04X}" for i in range(0, len(units), 2)
        )
    return char


def endpoint_key(path: str) -> str:
    """The object endpoint of a zone path: ``.../V1.0/Tickets/5/Notes`` → ``Tickets/Notes``."""
    rest = path.split("/V1.0/", 1)[-1]
    return "/".join(p for p in rest.split("/") if p and not p.isdigit() and p not in _NOT_ENDPOINT)


HOOK_FIELDS = ("Title", "Status", "Priority", "Queue", "Issue Type", "Sub-Issue Type")
TICKET_KEYS = ("id", "title", "description", *PICKLIST_FIELDS, "ticketType", "source")


def ticket_fields() -> list[dict[str, Any]]:
    issue = [
        pick(10, "Hardware", sort=1), pick(11, "Software", sort=2), pick(12, "Network", sort=3),
        pick(13, "Legacy", active=False, sort=4), pick(14, "Triage", default=True, sort=5),
        pick(15, "Security", sort=6),
    ]  # fmt: skip
    sub = [
        pick(136, "Printer", parent=10, sort=1), pick(137, "Laptop", parent=10, sort=2),
        pick(138, "Fax", parent=10, active=False, sort=3), pick(140, "Email", parent=11, sort=1),
        pick(141, "Office", parent=11, sort=2), pick(150, "VPN", parent=12, sort=1),
        pick(151, "Wi-Fi", parent=12, sort=2), pick(139, "Old scanner", parent=13, sort=1),
        pick(142, "Orphan", sort=9),
    ]  # fmt: skip
    queues = [
        pick(5, "Client Portal", system=True), pick(29682833, "Level I Support", default=True),
        pick(29682969, "Level II Support"), pick(29683000, "Old queue", active=False),
    ]  # fmt: skip
    priorities = [
        pick(4, "Critical", sort=1), pick(1, "High", sort=2),
        pick(2, "Medium", default=True, sort=3), pick(3, "Low", sort=4),
        pick(5, "Retired", active=False, sort=5),
    ]  # fmt: skip
    categories = [
        pick(3, "Standard", default=True), pick(4, "AEM Alert"),
        pick(5, "Standard (non-editable)", active=False),
    ]  # fmt: skip
    status = [pick(1, "New", default=True), pick(5, "Complete"), pick(8, "In Progress")]
    return [
        field_info("id"),
        field_info("title"),
        field_info("status", status),
        field_info("priority", priorities),
        field_info("queueID", queues),
        field_info("issueType", issue),
        field_info("subIssueType", sub, parent_field="issueType"),
        field_info("ticketCategory", categories),
        field_info("priority", [pick(99, "Duplicate entry")]),  # the sample repeats fields too
    ]


def note_fields() -> list[dict[str, Any]]:
    publish = [
        pick(1, "All Autotask Users", default=True, system=True),
        pick(2, "Internal Project Team", system=True),
        pick(4, "Internal & Co-Managed", system=True),
    ]
    note_types = [
        pick(1, "Task Summary", system=True), pick(2, "Task Detail", system=True),
        pick(3, "Task Notes", default=True), pick(13, "Old notes", active=False),
    ]  # fmt: skip
    return [field_info("noteType", note_types), field_info("publish", publish)]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lower_keys(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, dict) else {}


def matches(record: dict[str, Any], condition: Any) -> bool:
    """One Autotask query condition (``eq``, ``in``, ``gt``, ``gte``, ``lt``, ``lte``,
    ``exist``, ``notExist``, ``and``, ``or``)."""
    entry = lower_keys(condition)
    op = str(entry.get("op") or "").lower()
    if op in {"and", "or"}:
        parts = [matches(record, item) for item in entry.get("items") or []]
        return all(parts) if op == "and" else any(parts)
    field = str(entry.get("field") or "").lower()
    actual = lower_keys(record).get(field)
    wanted = entry.get("value")
    if op in {"exist", "notexist"}:
        return (actual not in (None, "")) == (op == "exist")
    if op == "in":
        if not isinstance(wanted, list):
            raise ValueError("the in operator takes a list of values")
        return str(actual) in {str(w) for w in wanted}
    if op == "eq":
        if isinstance(actual, str) and isinstance(wanted, str):
            return actual.casefold() == wanted.casefold()
        return actual == wanted or str(actual) == str(wanted)
    if op in {"gt", "gte", "lt", "lte"}:
        left, right = _comparable(actual), _comparable(wanted)
        if left is None or right is None:
            return False
        return {"gt": left > right, "gte": left >= right, "lt": left < right,
                "lte": left <= right}[op]  # fmt: skip
    raise ValueError(f"unsupported filter operator {op!r}")


def _comparable(value: Any) -> Any:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def errors(status: int, *messages: str) -> Response:
    return Response(status, {"errors": list(messages)})
