"""Who may use the console: the console token, browser sessions and CSRF tokens.

The token comes from the config (`console_token`), else the environment
(`WALLARM_CONSOLE_TOKEN`), else it is generated once and kept next to the database as
`<db>.console-token` (mode 0600), so a restart does not lock the operator out.
The API takes the token as `Authorization: Bearer`; a browser trades it once for a session
cookie (HttpOnly, SameSite=Strict) and proves every state change with the session's CSRF token.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ENV_TOKEN = "WALLARM_CONSOLE_TOKEN"
TOKEN_FILE_SUFFIX = ".console-token"
MIN_RECOMMENDED_TOKEN_LEN = 16

SESSION_COOKIE = "wallarm_console_session"
LOGIN_COOKIE = "wallarm_console_login"  # pre-session nonce: protects the login form itself
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


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


def resolve_console_token(configured: str | None, db_file: Path) -> str:
    """The console token: `configured` (the config's console_token), else $WALLARM_CONSOLE_TOKEN,
    else the one stored beside `db_file` (generated on first start)."""
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


@dataclass(slots=True)
class Session:
    id: str
    csrf_token: str
    created_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)


class SessionStore:
    """Browser sessions in memory: a node restart logs browsers out, which is acceptable."""

    def __init__(self, idle_seconds: float = 8 * 3600, max_age_seconds: float = 24 * 3600,
                 max_sessions: int = 1000) -> None:
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self) -> Session:
        self._drop_expired()
        while len(self._sessions) >= self.max_sessions:  # bounded memory: evict the oldest
            oldest = min(self._sessions.values(), key=lambda s: s.created_at)
            del self._sessions[oldest.id]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.time()
        if now - session.last_seen > self.idle_seconds or now - session.created_at > self.max_age_seconds:
            del self._sessions[session.id]
            return None
        session.last_seen = now
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop_expired(self) -> None:
        now = time.time()
        for sid, s in list(self._sessions.items()):
            if now - s.last_seen > self.idle_seconds or now - s.created_at > self.max_age_seconds:
                del self._sessions[sid]
