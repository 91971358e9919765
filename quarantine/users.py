"""Admin accounts, roles, API tokens and web sessions.

Roles (issue 6):

==============  =======================================================================
superadmin      everything, every tenant
tenant-admin    scoped to ``domains``: view, release sanitized copies, release originals
                (``release.originals: single``) or request them (``two_person``), delete
approver        approves or refuses requests to release originals; ``domains`` scopes
                them (empty: every tenant); may not approve a request they made
auditor         read only, including the audit log; ``domains`` scopes them (empty: all)
==============  =======================================================================

Passwords are argon2id hashes (argon2-cffi defaults, RFC 9106's second recommended
profile), re-hashed on login when the parameters change. API tokens and session ids are 256
random bits shown once and stored only as sha256: they are not guessable, so a slow hash would
add nothing but latency to every API call.

Not done here: rate limiting (the web layer does it) and deciding what a role may do to a
given item (``Actor.can`` plus the store's tenant scope do that together).
"""

from __future__ import annotations

import builtins
import datetime
import getpass
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, insert, select, update

from gateway.config import _check_domain
from quarantine.db import write_transaction
from quarantine.errors import UserError
from quarantine.schema import api_tokens, users, web_sessions

ROLES = ("superadmin", "tenant-admin", "approver", "auditor")
MIN_PASSWORD_LENGTH = 10

PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "release-sanitized": frozenset({"superadmin", "tenant-admin"}),
    "release-original": frozenset({"superadmin", "tenant-admin"}),
    "request-original": frozenset({"superadmin", "tenant-admin"}),
    "approve": frozenset({"superadmin", "approver"}),
    "delete": frozenset({"superadmin", "tenant-admin"}),
    "audit": frozenset({"superadmin", "auditor"}),
}

_hasher = PasswordHasher()
# Verified against when the user does not exist, so that timing does not tell which names do.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def sha256_text(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, with what role and scope, from where (for the audit log)."""

    name: str
    role: str
    domains: frozenset[str] = frozenset()
    remote: str = ""
    user_id: int | None = None
    language: str | None = None

    @property
    def scope(self) -> frozenset[str] | None:
        """The recipient domains this actor may see; None means every domain."""
        if self.role == "superadmin" or (self.role != "tenant-admin" and not self.domains):
            return None
        return self.domains

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def system_actor(name: str = "system") -> Actor:
    return Actor(name=name, role="superadmin", remote="local")


def cli_actor() -> Actor:
    """The operator running the CLI: root-equivalent on this machine, named in the audit log."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(name=f"cli:{who}", role="superadmin", remote="local")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str
    domains: tuple[str, ...]
    disabled: bool
    language: str | None
    has_password: bool
    created_at: datetime.datetime

    def actor(self, remote: str = "") -> Actor:
        return Actor(
            name=self.username,
            role=self.role,
            domains=frozenset(self.domains),
            remote=remote,
            user_id=self.id,
            language=self.language,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "role": self.role,
            "domains": list(self.domains),
            "disabled": self.disabled,
            "language": self.language,
            "created_at": self.created_at.isoformat(),
        }


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=row.role,
        domains=tuple(json.loads(row.domains)),
        disabled=bool(row.disabled),
        language=row.language,
        has_password=row.password_hash is not None,
        created_at=_aware(row.created_at) or utcnow(),
    )


def check_role(role: str, domains: list[str]) -> tuple[str, list[str]]:
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    try:
        clean = sorted({_check_domain(d) for d in domains})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if role == "tenant-admin" and not clean:
        raise UserError("a tenant-admin needs at least one --domain")
    if role == "superadmin" and clean:
        raise UserError("a superadmin sees every domain; drop --domain")
    return role, clean


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short (at least {MIN_PASSWORD_LENGTH} characters)")


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf: str
    via: str


class UserStore:
    """Users, tokens and sessions in the quarantine database. Thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users -----------------------------------------------------------------------------

    def add(
        self,
        username: str,
        role: str,
        domains: list[str],
        password: str | None,
        language: str | None = None,
    ) -> User:
        username = username.strip()
        if not username or len(username) > 128 or any(c.isspace() for c in username):
            raise UserError("user names are 1-128 characters without spaces")
        role, clean = check_role(role, domains)
        if password is not None:
            check_password(password)
        now = utcnow()
        with write_transaction(self.engine) as conn:
            exists = conn.execute(select(users.c.id).where(users.c.username == username)).first()
            if exists:
                raise UserError(f"user {username!r} exists")
            conn.execute(
                insert(users).values(
                    username=username,
                    password_hash=_hasher.hash(password) if password is not None else None,
                    role=role,
                    domains=json.dumps(clean),
                    disabled=False,
                    language=language,
                    created_at=now,
                    updated_at=now,
                )
            )
        return self.get(username)

    def get(self, username: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        if row is None:
            raise UserError(f"no user {username!r}")
        return _user(row)

    def get_by_id(self, user_id: int) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def list(self) -> builtins.list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def _update(self, username: str, **values: Any) -> None:
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(users)
                .where(users.c.username == username)
                .values(updated_at=utcnow(), **values)
            )
            if result.rowcount != 1:
                raise UserError(f"no user {username!r}")
            if values.get("disabled") or "password_hash" in values:
                # Disabling or a new password ends every session of that user at once.
                user_id = conn.execute(
                    select(users.c.id).where(users.c.username == username)
                ).scalar_one()
                conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))

    def set_password(self, username: str, password: str) -> None:
        check_password(password)
        self._update(username, password_hash=_hasher.hash(password))

    def set_disabled(self, username: str, disabled: bool) -> None:
        self._update(username, disabled=disabled)

    def set_role(self, username: str, role: str, domains: builtins.list[str]) -> None:
        role, clean = check_role(role, domains)
        self._update(username, role=role, domains=json.dumps(clean))

    def set_language(self, username: str, language: str | None) -> None:
        self._update(username, language=language)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches and the account is enabled; else None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.password_hash is None or row.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            self._update(username, password_hash=_hasher.hash(password))
        return _user(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(users)).scalar_one())

    # -- API tokens ------------------------------------------------------------------------

    def create_token(self, username: str, name: str) -> str:
        """A new bearer token for ``username``; the only time its text is available."""
        user = self.get(username)
        token = "mgk_" + secrets.token_urlsafe(32)
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(api_tokens).values(
                    user_id=user.id,
                    name=name[:128] or "token",
                    token_sha256=sha256_text(token),
                    created_at=utcnow(),
                )
            )
        return token

    def list_tokens(self, username: str) -> builtins.list[dict[str, Any]]:
        user = self.get(username)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(api_tokens).where(api_tokens.c.user_id == user.id).order_by(api_tokens.c.id)
            )
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "created_at": _aware(r.created_at).isoformat(),  # type: ignore[union-attr]
                    "last_used_at": r.last_used_at and _aware(r.last_used_at).isoformat(),  # type: ignore[union-attr]
                    "revoked": r.revoked_at is not None,
                }
                for r in rows
            ]

    def revoke_token(self, username: str, token_id: int) -> None:
        user = self.get(username)
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.user_id == user.id)
                .values(revoked_at=utcnow())
            )
            if result.rowcount != 1:
                raise UserError(f"user {username!r} has no token {token_id}")

    def user_for_token(self, token: str) -> User | None:
        digest = sha256_text(token)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(users, api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at)
                .join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_sha256 == digest, api_tokens.c.revoked_at.is_(None))
            ).first()
        if row is None or row.disabled:
            return None
        last = _aware(row.last_used_at)
        if last is None or utcnow() - last > datetime.timedelta(minutes=5):
            with write_transaction(self.engine) as conn:
                conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.id == row.token_id)
                    .values(last_used_at=utcnow())
                )
        return _user(row)

    # -- web sessions ----------------------------------------------------------------------

    def create_session(self, user: User, remote: str, via: str) -> tuple[str, str]:
        """(session id for the cookie, CSRF token). Only the id's sha256 is stored."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = utcnow()
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(web_sessions).values(
                    id_sha256=sha256_text(session_id),
                    user_id=user.id,
                    csrf=csrf,
                    created_at=now,
                    last_seen_at=now,
                    remote_addr=remote[:64],
                    via=via,
                )
            )
        return session_id, csrf

    def session(
        self, session_id: str, idle: datetime.timedelta, max_age: datetime.timedelta
    ) -> Session | None:
        """The live session for ``session_id`` (sliding idle timeout), or None."""
        digest = sha256_text(session_id)
        now = utcnow()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    web_sessions.c.csrf,
                    web_sessions.c.created_at,
                    web_sessions.c.last_seen_at,
                    web_sessions.c.via,
                    web_sessions.c.user_id,
                ).where(web_sessions.c.id_sha256 == digest)
            ).first()
        if row is None:
            return None
        created = _aware(row.created_at)
        seen = _aware(row.last_seen_at)
        assert created is not None
        assert seen is not None
        if now - seen > idle or now - created > max_age:
            self.end_session(session_id)
            return None
        user = self.get_by_id(row.user_id)
        if user is None or user.disabled:
            return None
        if now - seen > datetime.timedelta(seconds=30):
            with write_transaction(self.engine) as conn:
                conn.execute(
                    update(web_sessions)
                    .where(web_sessions.c.id_sha256 == digest)
                    .values(last_seen_at=now)
                )
        return Session(user=user, csrf=row.csrf, via=row.via)

    def end_session(self, session_id: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                delete(web_sessions).where(web_sessions.c.id_sha256 == sha256_text(session_id))
            )

    def purge_sessions(self, max_age: datetime.timedelta) -> int:
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                delete(web_sessions).where(web_sessions.c.last_seen_at < utcnow() - max_age)
            )
            return int(result.rowcount or 0)
