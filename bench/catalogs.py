"""A labeled multilingual set built from the message catalogs installed on this machine.

Every Debian system carries its programs' messages translated by people, as gettext catalogs
(``/usr/share/locale/<language>/LC_MESSAGES/<program>.mo``). The English message is the catalog's
key and each language's translation is its value, so one English message and its German, French,
Spanish and Dutch translations say the same thing in five languages. Grouping programs by what
they are about gives MSP-like categories, and each message is a short "ticket" of its category:
the error and status text that users paste into tickets ("Unable to resolve host address",
"Authentication token manipulation error"), in five languages.

Categories (the programs whose catalogs make them):

``Network``       wget, avahi (downloads, host names, connections)
``Accounts``      Linux-PAM, shadow, adduser (sign-in, passwords, users and groups)
``Software``      apt, libapt-pkg, dpkg, PackageKit (installing and updating packages)
``Files``         tar, findutils, diffutils (archives, finding and comparing files)
``Security``      gnutls (certificates, TLS, keys)
``Services``      systemd (services, start-up, the system journal)
``Desktop``       gtk20 (windows, dialogs, printing from applications)

Only messages of 3 to 40 words (no usage texts, printf codes and mnemonics removed) translated
into all four languages are kept, at most ``PER_CATEGORY`` per category (its programs' messages
taken in turn, each in catalog order), so the categories weigh alike. The split (in
``bench/multilingual.py``) follows the data README's rule on the English message, so a message and
its translations are always on the same side: no eval ticket's translation is in training.
"""

from __future__ import annotations

import gettext
import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from psatriage.local_engine.data import Example

LOCALE: Final = Path("/usr/share/locale")
LANGUAGES: Final = ("en", "de", "fr", "es", "nl")
CATEGORIES: Final = {
    "Network": ("wget", "avahi"),
    "Accounts": ("Linux-PAM", "shadow", "adduser"),
    "Software": ("apt", "libapt-pkg6.0", "dpkg", "PackageKit"),
    "Files": ("tar", "findutils", "diffutils"),
    "Security": ("gnutls30",),
    "Services": ("systemd",),
    "Desktop": ("gtk20",),
}
PER_CATEGORY: Final = 250
_MAX_WORDS: Final = 40
_WORD: Final = re.compile(r"[^\W\d_]{2,}")
_FORMAT: Final = re.compile(r"%(?:\d+\$)?[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z|j|t)?[a-zA-Z%]")
_MARKUP: Final = re.compile(r"[_&](?=\w)|<[^>]{1,20}>|\\n|\s+")


def _catalog(language: str, program: str) -> dict[str, str]:
    path = LOCALE / language / "LC_MESSAGES" / f"{program}.mo"
    try:
        with path.open("rb") as source:
            catalog: dict[object, str] = gettext.GNUTranslations(source)._catalog  # type: ignore[attr-defined]
    except (OSError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in catalog.items() if isinstance(k, str) and k and v}


def _text(message: str) -> str:
    """A message as a person would paste it: no printf codes, mnemonics or markup."""
    return " ".join(_MARKUP.sub(" ", _FORMAT.sub("…", message)).split())


def available() -> bool:
    """Whether this machine has the catalogs (German ``apt`` as a sample)."""
    return (LOCALE / "de" / "LC_MESSAGES" / "apt.mo").is_file()


def examples(per_category: int = PER_CATEGORY) -> list[Example]:
    """One example per message and language; labels ``category``, ``language`` and ``message``
    (the English key, which groups a message's translations). A category takes its programs'
    messages in turn, so a program with a long catalog does not fill it alone."""
    out: list[Example] = []
    for category, programs in CATEGORIES.items():
        queues = [_messages(program) for program in programs]
        taken = [m for turn in itertools.zip_longest(*queues) for m in turn if m is not None]
        for number, texts in enumerate(taken[:per_category], start=1):
            for language, text in texts.items():
                out.append(
                    Example(
                        id=f"{category}-{number}-{language}",
                        title="",
                        description=text,
                        labels={"category": category, "language": language, "message": texts["en"]},
                    )
                )
    return out


def _messages(program: str) -> list[dict[str, str]]:
    """The program's usable messages, each in every language (``en`` first)."""
    catalogs = [_catalog(language, program) for language in LANGUAGES[1:]]
    out = []
    for key in _shared_keys(catalogs):
        english = _text(key.split("\x04")[-1])  # a "context\x04message" key: the message
        words = len(_WORD.findall(english))
        if words < 3 or words > _MAX_WORDS or "--" in key or "\n\n" in key:
            continue  # too short to say anything, or a usage text
        texts = {"en": english} | {
            lang: _text(c[key]) for lang, c in zip(LANGUAGES[1:], catalogs, strict=True)
        }
        if any(texts[lang] == english for lang in LANGUAGES[1:]):
            continue  # left untranslated somewhere: not a message in five languages
        out.append(texts)
    return out


def _shared_keys(catalogs: Iterable[dict[str, str]]) -> list[str]:
    first, *rest = list(catalogs)
    return [key for key in first if all(key in other for other in rest)]
