"""Wrong console tokens, limited per client: a token bucket, then lock-outs that double.

Every wrong console token (the login form or a wrong `Authorization: Bearer`) takes one token
from the client's bucket (`attempts` per `per_seconds`, refilled continuously). When the bucket
is empty the client is locked out for `lockout_base` seconds. From then on the client is on
probation: each further wrong token locks it out again, twice as long each time, up to
`lockout_max`, until it has been quiet for `forget_after` seconds past its last lock-out. A right
token clears the client at once (the owner who mistyped waits `lockout_base` at most). A client
whose bucket is full again, or whose probation is over, is forgotten: its entry would say nothing
a fresh one does not.

Memory is bounded: at most `max_clients` entries. When they are all taken by recent failures
(a spray from many addresses), clients not yet in the table share one overflow entry, whose
bucket is `overflow_attempts` per `per_seconds`: a spray is limited as a whole, never let
through unlimited. IPv6 clients are keyed by their /64 (one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

OVERFLOW_KEY = "*"  # the shared entry of clients that found the table full


@dataclass(slots=True)
class _Client:
    tokens: float
    updated_at: float  # when `tokens` was last brought up to date (a lock-out moves it to its end)
    locked_until: float = 0.0
    strikes: int = 0  # lock-outs since the client was last forgotten; > 0: on probation


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds; set when not allowed


def client_key(remote: str | None) -> str:
    """The limiter's key for a peer address: the address, or its /64 for IPv6."""
    if not remote:
        return "unknown"
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class LoginLimiter:
    def __init__(self, attempts: int = 10, per_seconds: float = 60.0, lockout_base: float = 30.0,
                 lockout_max: float = 300.0, forget_after: float = 900.0, max_clients: int = 10_000,
                 overflow_attempts: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        if attempts < 1 or per_seconds <= 0 or lockout_base <= 0 or lockout_max < lockout_base or max_clients < 1:
            raise ValueError("login limiter: attempts, per_seconds, lockout_base and max_clients must be "
                             "positive and lockout_max >= lockout_base")
        self.attempts = attempts
        self.per_seconds = per_seconds
        self.lockout_base = lockout_base
        self.lockout_max = lockout_max
        self.forget_after = forget_after
        self.max_clients = max_clients
        self.overflow_attempts = overflow_attempts
        self.clock = clock
        self._clients: dict[str, _Client] = {}
        self._last_sweep = float("-inf")
        # Counters read by /metrics.
        self.failures = 0
        self.refused = 0  # attempts answered 429 without looking at the token
        self.lockouts = 0

    def __len__(self) -> int:
        return len(self._clients)

    def check(self, key: str) -> Decision:
        """May this client present a token now? Called before the token is compared."""
        now = self.clock()
        client = self._clients.get(key)
        if client is None and len(self._clients) >= self.max_clients:
            client = self._clients.get(OVERFLOW_KEY)
        if client is not None and now < client.locked_until:
            self.refused += 1
            return Decision(False, client.locked_until - now)
        return Decision(True)

    def failed(self, key: str) -> Decision:
        """A wrong token from this client: take a token; lock it out when none is left."""
        now = self.clock()
        self.failures += 1
        key, client = self._entry(key, now)
        capacity = self._capacity(key)
        if self._recovered(key, client, now):
            client.strikes, client.tokens, client.updated_at = 0, capacity, now
        if client.strikes == 0:
            client.tokens = min(capacity, client.tokens + max(0.0, now - client.updated_at) * capacity / self.per_seconds)
            client.updated_at = now
            client.tokens -= 1
            if client.tokens >= 1:
                return Decision(True)
        # The bucket ran dry, or a wrong token while on probation: lock out, longer each time.
        client.strikes += 1
        self.lockouts += 1
        lockout = min(self.lockout_base * 2 ** min(client.strikes - 1, 30), self.lockout_max)
        client.locked_until = client.updated_at = now + lockout
        client.tokens = 0.0
        return Decision(False, lockout)

    def succeeded(self, key: str) -> None:
        """The right token: the client starts afresh (the owner is never kept waiting after)."""
        self._clients.pop(key, None)

    def _capacity(self, key: str) -> float:
        return float(self.overflow_attempts if key == OVERFLOW_KEY else self.attempts)

    def _entry(self, key: str, now: float) -> tuple[str, _Client]:
        """The client's entry (made if new), or the shared overflow entry when the table is full."""
        client = self._clients.get(key)
        if client is not None:
            return key, client
        if len(self._clients) >= self.max_clients:
            self._forget_recovered(now)
        if len(self._clients) >= self.max_clients:
            key = OVERFLOW_KEY
            client = self._clients.get(key)
            if client is not None:
                return key, client
        client = _Client(tokens=self._capacity(key), updated_at=now)
        self._clients[key] = client  # the overflow entry may make the table max_clients + 1
        return key, client

    def _recovered(self, key: str, client: _Client, now: float) -> bool:
        """Would a fresh entry say the same? Bucket full again, or probation over."""
        if now < client.locked_until:
            return False
        if client.strikes:
            return now >= client.locked_until + self.forget_after
        capacity = self._capacity(key)
        return client.tokens + (now - client.updated_at) * capacity / self.per_seconds >= capacity

    def _forget_recovered(self, now: float) -> None:
        """Drop the clients that have recovered; at most once a second, so that a spray against
        a full table does not cost a scan per request."""
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        for key, client in list(self._clients.items()):
            if self._recovered(key, client, now):
                del self._clients[key]
