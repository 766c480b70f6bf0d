"""Who may use the console: the console token, browser sessions and CSRF tokens.

The token comes from the config (`console_token`), else the environment
(`WALLARM_CONSOLE_TOKEN`), else it is generated once and kept next to the database as
`<db>.console-token` (mode 0600), so a restart does not lock the operator out.
The API takes the token as `Authorization: Bearer`; a browser trades it once for a session
cookie (HttpOnly, SameSite=Strict) and proves every state change with the session's CSRF token.
Sessions live in the node's store, hashed (see `SessionStore`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node.store.base import SessionRecord, Store, StoreError

log = logging.getLogger(__name__)

ENV_TOKEN = "WALLARM_CONSOLE_TOKEN"
TOKEN_FILE_SUFFIX = ".console-token"
MIN_RECOMMENDED_TOKEN_LEN = 16

SESSION_COOKIE = "wallarm_console_session"
LOGIN_COOKIE = "wallarm_console_login"  # pre-session nonce: protects the login form itself
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_SESSION_ID_LEN = 256  # ours are 43 characters; a longer cookie is not worth hashing


def token_file_for(db_file: Path) -> Path:
    """`<db>.console-token`: the token travels with the database it protects."""
    return db_file.with_name(db_file.name + TOKEN_FILE_SUFFIX)


def _read_token_file(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # A token readable by other users is a leaked token: tighten it, and say so.
        log.warning("console token file %s had mode %o; setting it to 0600", path, mode)
        path.chmod(0o600)
    token = path.read_text("utf-8").strip()
    if not token:
        raise ValueError(f"console token file {path} is empty; delete it to generate a new token")
    return token


def _create_token_file(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + 0600 at creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


def resolve_console_token(configured: str | None, db_file: Path | None) -> str:
    """The console token: `configured` (the config's console_token), else $WALLARM_CONSOLE_TOKEN,
    else the one stored beside `db_file` (generated on first start). With a PostgreSQL store
    (`db_file` None) there is no file to keep it in, and nodes sharing sessions must share it:
    it must be configured."""
    source = "config console_token"
    if not configured:
        configured = os.environ.get(ENV_TOKEN, "")
        source = f"environment variable {ENV_TOKEN}"
    configured = (configured or "").strip()
    if configured:
        if len(configured) < MIN_RECOMMENDED_TOKEN_LEN:
            log.warning("console token from %s is short (%d chars); use at least %d random characters",
                        source, len(configured), MIN_RECOMMENDED_TOKEN_LEN)
        return configured

    if db_file is None:
        raise ValueError(f"with a PostgreSQL store, set console_token or {ENV_TOKEN}: the nodes share console "
                         "sessions, so they need the same token")
    path = token_file_for(db_file)
    try:
        if path.exists():
            token = _read_token_file(path)
            log.info("console token read from %s (cat %s)", path, path)
            return token
        try:
            token = _create_token_file(path)
        except FileExistsError:  # another process created it between exists() and open()
            return _read_token_file(path)
    except OSError as e:
        raise ValueError(f"console token file {path}: {e.strerror or e}; "
                         f"fix its directory's permissions or set console_token / {ENV_TOKEN}") from e
    log.warning("generated a console token and stored it in %s (mode 0600); read it with: cat %s",
                path, path)
    print(f"console token stored in {path}; read it with: cat {path}", flush=True)
    return token


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so response timing does not reveal a token prefix."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "surrogateescape"))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


# ---------------------------------------------------------------------------- sessions


def session_id_hash(session_id: str) -> bytes:
    """What the store keeps of a session id: its SHA-256 (the id has 256 random bits, so a
    plain hash cannot be reversed by guessing)."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


def csrf_token_for(session_id: str) -> str:
    """The session's CSRF token, derived from its id: nothing more to store, and the token
    (shown in every page) does not reveal the id (kept in an HttpOnly cookie)."""
    mac = hmac.new(session_id.encode("utf-8", "surrogateescape"), b"wallarm-console-csrf", hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf_token: str


class SessionStore:
    """Browser sessions, kept in the node's store (hashed) so that a restart does not log
    browsers out: `idle_seconds` without use or `max_age_seconds` in all ends one; at most
    `max_sessions` (the oldest make room)."""

    def __init__(self, store: Store, idle_seconds: float = 8 * 3600, max_age_seconds: float = 24 * 3600,
                 max_sessions: int = 1000, renew_after_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.max_sessions = max_sessions
        # The pages poll every second: write the new expiry only when it moved this much.
        self.renew_after_seconds = renew_after_seconds
        self.clock = clock

    def _expiry(self, created_at: float, now: float) -> float:
        return min(created_at + self.max_age_seconds, now + self.idle_seconds)

    async def create(self) -> Session:
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        await self.store.add_session(SessionRecord(session_id_hash(session_id), now, self._expiry(now, now)),
                                     self.max_sessions)
        return Session(session_id, csrf_token_for(session_id))

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > MAX_SESSION_ID_LEN:
            return None
        now = self.clock()
        record = await self.store.get_session(session_id_hash(session_id), now)
        if record is None:
            return None
        expiry = self._expiry(record.created_at, now)
        if expiry - record.expires_at >= self.renew_after_seconds:
            try:
                await self.store.renew_session(record.id_hash, expiry)
            except StoreError as e:  # a full disk: the session stays valid until its stored expiry
                log.warning("console: could not extend a session's expiry: %s", e)
        return Session(session_id, csrf_token_for(session_id))

    async def delete(self, session_id: str | None) -> None:
        if session_id:
            await self.store.delete_session(session_id_hash(session_id))

    async def sweep(self) -> int:
        return await self.store.sweep_sessions(self.clock())
