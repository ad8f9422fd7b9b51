"""The console's people: users and their argon2 password hashes, browser sessions, the audit log.

A session cookie carries a random token; the database keeps only its SHA-256, so a copy of the
database signs nobody in. Removing a user or changing a password ends that user's sessions.
Failed sign-ins are audit rows, and the sign-in rate limit counts them, so it holds across every
web process that shares the database.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from psatriage.errors import ConfigError
from psatriage.store.tables import AuditRow, ConsoleSessionRow, ConsoleUserRow, utcnow

MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


class Role(enum.StrEnum):
    """What a person may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"  # read every page
    REVIEWER = "reviewer"  # and act on the review queue
    ADMIN = "admin"  # and retry events

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


def normalize_name(name: str) -> str:
    """User names compare case-insensitively (they are often e-mail addresses)."""
    cleaned = name.strip().lower()
    if not _NAME.match(cleaned):
        raise ConfigError(f"user name {name!r} is not usable; fix: 1-255 characters without spaces")
    return cleaned


class UserExists(ConfigError):
    """``users add`` for a name that is taken."""


class Users:
    def __init__(self, sessions: sessionmaker[Session], hasher: PasswordHasher | None = None):
        self._sessions = sessions
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def add(self, name: str, role: Role, password: str | None) -> str:
        """Create a user (``password`` None: single sign-on only); returns the stored name."""
        stored = normalize_name(name)
        row = ConsoleUserRow(
            name=stored, role=role.value, password_hash=self._hash(password) if password else None
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise UserExists(
                f"user {stored!r} already exists; fix: `psatriage users passwd {stored}` to "
                "change the password, or remove the user first to change the role"
            ) from None
        return stored

    def set_password(self, name: str, password: str) -> bool:
        """Change a password and end the user's sessions; False if there is no such user."""
        stored = normalize_name(name)
        with self._sessions.begin() as session:
            changed = session.execute(
                update(ConsoleUserRow)
                .where(ConsoleUserRow.name == stored)
                .values(password_hash=self._hash(password), updated_at=utcnow())
            ).rowcount  # type: ignore[attr-defined]
            session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user_name == stored))
        return bool(changed)

    def remove(self, name: str) -> bool:
        """Delete a user and end their sessions; False if there is no such user."""
        stored = normalize_name(name)
        with self._sessions.begin() as session:
            session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user_name == stored))
            removed = session.execute(
                delete(ConsoleUserRow).where(ConsoleUserRow.name == stored)
            ).rowcount  # type: ignore[attr-defined]
        return bool(removed)

    def get(self, name: str) -> ConsoleUserRow | None:
        try:
            stored = normalize_name(name)
        except ConfigError:
            return None
        with self._sessions() as session:
            return session.get(ConsoleUserRow, stored)

    def all(self) -> list[ConsoleUserRow]:
        with self._sessions() as session:
            return list(session.execute(select(ConsoleUserRow).order_by("name")).scalars())

    def count(self) -> int:
        with self._sessions() as session:
            return session.execute(select(func.count()).select_from(ConsoleUserRow)).scalar_one()

    def verify(self, name: str, password: str) -> ConsoleUserRow | None:
        """The user if the password is theirs, else None (unknown and wrong look the same)."""
        user = self.get(name)
        stored = user.password_hash if user is not None else None
        if stored is None and self._dummy is None:
            # checked when the name is unknown, so a wrong name costs the time of a wrong
            # password and the answer cannot tell them apart
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            self._hasher.verify(stored or self._dummy or "", password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or stored is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            self.set_password(user.name, password)
        return user

    def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigError(
                f"the password is too short; fix: use at least {MIN_PASSWORD_LENGTH} characters"
            )
        return self._hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a signed-in session lasts at most, and without a request."""

    absolute: timedelta
    idle: timedelta
    signing_in: timedelta = timedelta(minutes=30)  # a session nobody has signed in to yet


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Browser sessions, found by the token in the cookie."""

    def __init__(self, sessions: sessionmaker[Session], lifetimes: Lifetimes) -> None:
        self._sessions = sessions
        self.lifetimes = lifetimes

    def start(
        self,
        *,
        user_name: str | None = None,
        role: Role | None = None,
        method: str = "",
        pending: dict[str, str] | None = None,
    ) -> tuple[str, ConsoleSessionRow]:
        """A new session and the token for its cookie; expired sessions are cleared out."""
        now = utcnow()
        token = secrets.token_urlsafe(32)
        lifetime = self.lifetimes.absolute if user_name else self.lifetimes.signing_in
        row = ConsoleSessionRow(
            token_hash=token_hash(token),
            user_name=user_name,
            role=role.value if role else None,
            method=method,
            csrf_token=secrets.token_urlsafe(32),
            pending=pending,
            created_at=now,
            seen_at=now,
            expires_at=now + lifetime,
        )
        with self._sessions.begin() as session:
            session.execute(
                delete(ConsoleSessionRow).where(
                    or_(
                        ConsoleSessionRow.expires_at < now,
                        ConsoleSessionRow.seen_at < now - self.lifetimes.idle,
                    )
                )
            )
            session.add(row)
        return token, row

    def find(self, token: str) -> ConsoleSessionRow | None:
        """The live session for ``token``; None if unknown, expired or idle too long."""
        now = utcnow()
        with self._sessions() as session:
            row = session.get(ConsoleSessionRow, token_hash(token))
        if row is None or row.expires_at <= now or row.seen_at <= now - self.lifetimes.idle:
            return None
        if now - row.seen_at > timedelta(minutes=1):  # at most one write a minute per session
            with self._sessions.begin() as session:
                session.execute(
                    update(ConsoleSessionRow)
                    .where(ConsoleSessionRow.token_hash == row.token_hash)
                    .values(seen_at=now)
                )
        return row

    def set_pending(self, token: str, pending: dict[str, str] | None) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(ConsoleSessionRow)
                .where(ConsoleSessionRow.token_hash == token_hash(token))
                .values(pending=pending)
            )

    def end(self, token: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                delete(ConsoleSessionRow).where(ConsoleSessionRow.token_hash == token_hash(token))
            )


class Audit:
    """Who did what, when, from where."""

    SIGN_IN_FAILED = "sign_in_failed"

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record(
        self, actor: str, action: str, target: str = "", detail: str = "", address: str = ""
    ) -> None:
        with self._sessions.begin() as session:
            session.add(
                AuditRow(
                    actor=actor[:255],
                    action=action[:32],
                    target=target[:255],
                    detail=detail,
                    address=address[:64],
                )
            )

    def failed_sign_ins(self, name: str, address: str, since: datetime) -> tuple[int, int]:
        """Failed sign-ins since ``since``: for this name, and from this address."""
        counted = select(func.count()).select_from(AuditRow)
        recent = (AuditRow.action == self.SIGN_IN_FAILED, AuditRow.at >= since)
        with self._sessions() as session:
            by_name = session.execute(counted.where(*recent, AuditRow.target == name[:255]))
            by_address = session.execute(counted.where(*recent, AuditRow.address == address[:64]))
            return int(by_name.scalar() or 0), int(by_address.scalar() or 0)

    def recent(self, limit: int = 100) -> list[AuditRow]:
        with self._sessions() as session:
            return list(
                session.execute(
                    select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
                ).scalars()
            )
