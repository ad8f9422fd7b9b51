"""E-mail boilerplate removed before the local engine reads a ticket.

MSP tickets are mostly e-mails: what the sender wrote comes first, then a sign-off, a signature,
a confidentiality disclaimer, "Sent from my iPhone" and the quoted thread it answered. Only the
first part says what the ticket is about; the rest is the same in every ticket of a sender (and
teaches a model who wrote, not what is wrong). ``clean`` keeps the first part:

- the quoted thread: from the first "On ... wrote:", "-----Original Message-----", a block of
  "From:/Sent:/To:" headers (English, German, French, Spanish, Dutch), or a line quoted with ">";
- the signature: from a "-- " line, or from a sign-off line ("Best regards,", "Mit freundlichen
  Grüßen", "Cordialement", "Saludos", "Met vriendelijke groet"...) in the second half of the text;
- "Sent from my iPhone"-style lines and disclaimer paragraphs ("This e-mail and any attachments
  are confidential...");
- anonymization masks (``XXXX``, ``<name>``, ``[Your Name]``, ``<tel_num>``).

A text that would be left empty keeps its original words (minus the masks): nothing a ticket says
is ever thrown away entirely.
"""

from __future__ import annotations

import re
from typing import Final

_FLAGS: Final = re.IGNORECASE | re.MULTILINE

_QUOTED_THREAD: Final = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original|"
    r"oorspronkelijk bericht)\s*-{2,}"
    r"|(?:on|am|le|el|op)\s.{4,200}?(?:wrote|schrieb|a écrit|escribió|schreef)\s*:"
    r"|(?:from|von|de|van)\s*:.*\n\s*(?:sent|gesendet|envoyé|enviado|verzonden|date|datum)\s*:"
    r"|>"
    r")",
    _FLAGS,
)
_SIGNATURE_DASHES: Final = re.compile(r"^-- ?$", re.MULTILINE)
_SIGN_OFF: Final = re.compile(
    r"^\s*(?:(?:best|kind|warm|many thanks and)?\s*regards|best wishes|sincerely|yours (?:truly|"
    r"sincerely|faithfully)|cheers|thanks(?: and regards| in advance)?|thank you|"
    r"(?:mit )?(?:freundlichen|besten|herzlichen|vielen) (?:grüßen|grüssen|dank)|viele grüße|"
    r"liebe grüße|(?:bien )?cordialement|salutations distinguées|bien à vous|merci d'avance|"
    r"(?:un )?saludo(?:s)?(?: cordiales)?|atentamente|gracias|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groeten|bedankt)\b[ \t,.!]*$",
    _FLAGS,
)
_SENT_FROM: Final = re.compile(
    r"^\s*(?:sent from|get outlook for|gesendet von|envoyé de|enviado desde|verzonden vanaf)\b.*$",
    _FLAGS,
)
_DISCLAIMER: Final = re.compile(
    r"^[^\n]*(?:this (?:e-?mail|message)[^\n]*(?:confidential|intended (?:solely|only))|"
    r"(?:confidentiality|disclaimer) notice|diese e-mail[^\n]*vertraulich|"
    r"ce message[^\n]*confidentiel|este (?:correo|mensaje)[^\n]*confidencial|"
    r"deze e-?mail[^\n]*vertrouwelijk)[^\n]*(?:\n(?!\s*\n)[^\n]*)*",
    _FLAGS,
)
_MASKS: Final = re.compile(
    r"\b[xX]{2,}(?:/[xX]{2,})*\b|<[a-z_@.]{2,30}>|\[(?:your |tel )?[a-z_ ]{2,20}\]", re.IGNORECASE
)

_SPACES: Final = re.compile(r"[ \t]{2,}")


def clean(text: str) -> str:
    """``text`` without quoted replies, signatures, disclaimers and anonymization masks."""
    kept = _MASKS.sub(" ", text)
    for cut in (_QUOTED_THREAD, _SIGNATURE_DASHES):
        match = cut.search(kept)
        if match is not None and kept[: match.start()].strip():
            kept = kept[: match.start()]
    kept = _cut_sign_off(kept)
    kept = _SENT_FROM.sub(" ", kept)
    kept = _DISCLAIMER.sub(" ", kept)
    kept = _SPACES.sub(" ", kept).strip()
    return kept or _SPACES.sub(" ", _MASKS.sub(" ", text)).strip()


def _cut_sign_off(text: str) -> str:
    """Drop everything from a sign-off line in the second half of the text (the signature)."""
    half = len(text) // 2
    for match in _SIGN_OFF.finditer(text):
        if match.start() >= half and text[: match.start()].strip():
            return text[: match.start()]
    return text
