"""Secret references: tenant files hold ``env:NAME`` or ``file:PATH``, never the secret itself.

``Secret`` is the pydantic type every adapter and classifier config uses for credentials. It is
resolved when the file is loaded, so a missing variable or file fails at load, and it is held as a
``SecretStr`` so it never shows in a ``repr`` or a log line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr

_HELP = "write it as 'env:NAME' (an environment variable) or 'file:PATH' (a file holding only it)"


def resolve_secret(value: object) -> SecretStr:
    """Turn a reference into the secret's value; raise ``ValueError`` with the fix otherwise."""
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a secret must be a reference string; fix: {_HELP}")
    kind, sep, name = value.partition(":")
    if not sep or kind not in {"env", "file"} or not name:
        raise ValueError(f"secrets are never written in the file; fix: {_HELP}")
    if kind == "env":
        resolved = os.environ.get(name)
        if resolved is None:
            raise ValueError(
                f"environment variable {name} is not set; fix: export it or use file:PATH"
            )
        return SecretStr(resolved)
    path = Path(name).expanduser()
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(
            f"cannot read secret file {path}: {exc.strerror}; "
            "fix: give a readable file holding only the secret"
        ) from None


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A credential given as ``env:NAME`` or ``file:PATH`` in configuration."""
