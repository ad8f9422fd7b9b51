"""What of a model's reasoning may be written into a ticket note.

The reasoning is model output shaped by user-written ticket text, so it is treated as untrusted:
markup and links are removed, sentences that read like instructions (to the technician, or about
the model's own rules) are dropped, and the rest is capped. A note says what was chosen and why;
it never tells a technician to do anything.
"""

from __future__ import annotations

import re

MAX_REASONING_CHARS = 300

_TAG = re.compile(r"<[^>]{0,200}>")
_MD_LINK = re.compile(r"\[([^\]]{0,200})\]\([^)]{0,500}\)")
_URL = re.compile(r"(?i)\b(?:https?|ftp|file|javascript|data|mailto):\S+|\bwww\.\S+")
_DOMAIN = re.compile(r"(?i)\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|io|ru|cn|xyz|top|info|biz)\b\S*")
_MARKUP = re.compile(r"[`*_#>|~]+|\{\{|\}\}|\{%|%\}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

# Phrases that instruct rather than explain, in the languages MSP tickets are commonly written in.
_IMPERATIVE = re.compile(
    r"(?ix)"
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instruction|rule|prompt|above|previous|prior)"
    r"|\b(system\s+prompt|developer\s+message|jailbreak|you\s+are\s+now|act\s+as)\b"
    r"|\bauthori[sz]e\s+you\b|\b(skip|bypass)\s+(the\s+)?(validation|checks?|rules?)\b"
    r"|\b(note|message)\s+to\s+the\s+(ai|model|assistant|llm)\b|\b(text|instructions?)\s+above\b"
    r"|\b(technician|engineer|agent|admin|support|you)\b.{0,30}\b(must|should|need\s+to|have\s+to)\b"
    r"|\b(please\s+)?(call|click|visit|open|download|install|run|execute|send|transfer|wire|pay"
    r"|reset|disable|delete|grant|share|reply\s+with|contact)\b\s+(the|this|that|a|an|my|your|our"
    r"|it|them|me|us|all|now|immediately|\+?\d)"
    r"|\b(techni\w*|t[eé]cnico|beheerder|admin\w*|support|helpdesk)\b.{0,40}"
    r"\b(muss|soll\w*|doit|doivent|debe\w*|tiene\s+que|moet\w*|deve\w*|has\s+to)\b"
    r"|\b(ignorier|vergiss|missachte)\w*|\banweisung(en)?\b|\bsystemanweisung"
    r"|\b(ignore[zr]?|oublie[zr]?)\b.{0,30}\b(instructions?|consignes?|règles?)"
    r"|\b(ignora|olvida)\w*\b.{0,30}\b(instrucciones|reglas)"
    r"|\b(negeer|vergeet)\b.{0,30}\b(instructies|regels)"
    r"|\b(ignora|dimentica)\w*\b.{0,30}\b(istruzioni|regole)"
)


def reasoning_for_note(text: str, limit: int = MAX_REASONING_CHARS) -> str:
    """The reasoning as it may appear in a note: plain, link-free, explanation-only, capped."""
    text = _MD_LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _URL.sub("[link removed]", text)
    text = _DOMAIN.sub("[link removed]", text)
    text = _MARKUP.sub(" ", text)
    kept = [
        sentence.strip()
        for sentence in _SENTENCE.split(text)
        if sentence.strip() and not _IMPERATIVE.search(sentence)
    ]
    text = " ".join(" ".join(kept).split())
    if not text:
        return "(the model's reasoning was withheld: it read like instructions, not an explanation)"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
