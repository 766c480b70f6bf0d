"""The console under abuse: token guessing (rate limit, lock-out, bounded memory), CSRF and
Origin on every state-changing route (enumerated from the router), sessions across a restart."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.admin import make_admin_app
from node.console.app import GATE_KEY
from node.console.auth import SESSION_COOKIE, SessionStore, session_id_hash
from node.console.login_limit import OVERFLOW_KEY, LoginLimiter, client_key
from node.store.base import AttackFilter
from tests.support.console import TOKEN, Console
from tests.support.node import start_node
from tests.test_console_auth import csrf_of, login
from tests.support.metrics import samples

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- the limiter


def test_bucket_then_doubling_lockouts_capped_and_success_resets():
    clock = Clock()
    lim = LoginLimiter(attempts=5, per_seconds=60, lockout_base=30, lockout_max=120, clock=clock)
    for _ in range(4):
        assert lim.check("a").allowed and lim.failed("a").allowed
    last = lim.failed("a")  # the fifth wrong token empties the bucket
    assert not last.allowed and last.retry_after == 30
    refused = lim.check("a")
    assert not refused.allowed and refused.retry_after == 30
    assert lim.check("b").allowed  # another client is not affected
    # Each failure after a lock-out locks again, twice as long, up to the cap.
    for expected in (60, 120, 120):
        clock.now += lim.check("a").retry_after
        assert lim.check("a").allowed
        d = lim.failed("a")
        assert not d.allowed and d.retry_after == expected
    assert lim.lockouts == 4 and lim.refused == 4  # the four checks during lock-outs
    # The owner's right token (after the lock-out) clears everything.
    clock.now += 120
    assert lim.check("a").allowed
    lim.succeeded("a")
    assert len(lim) == 0
    assert all(lim.failed("a").allowed for _ in range(4))


def test_the_bucket_refills_probation_follows_a_lockout_and_a_quiet_client_starts_over():
    clock = Clock()
    lim = LoginLimiter(attempts=5, per_seconds=60, lockout_base=30, lockout_max=300, forget_after=900, clock=clock)
    for _ in range(4):
        lim.failed("a")
        clock.now += 12  # one token back every 12 s: a slow guesser never runs dry...
    assert lim.failed("a").allowed  # four tokens left
    assert all(lim.failed("a").allowed for _ in range(3))
    d = lim.failed("a")  # ...a fast one does
    assert not d.allowed and d.retry_after == 30
    # On probation: waiting for the bucket to refill does not buy another five guesses.
    clock.now += 30 + 120
    d = lim.failed("a")
    assert not d.allowed and d.retry_after == 60
    # Quiet for forget_after past the lock-out: forgotten, the bucket and the doubling start over.
    clock.now += 60 + 900
    assert all(lim.failed("a").allowed for _ in range(4))
    d = lim.failed("a")
    assert not d.allowed and d.retry_after == 30


def test_a_guesser_gets_few_tries_per_hour():
    clock = Clock()
    lim = LoginLimiter(clock=clock)  # the console's defaults
    tries = 0
    while clock.now < 1000 + 3600:
        if lim.check("a").allowed:
            tries += 1
            lim.failed("a")
        clock.now += 1  # one attempt a second, as fast as the lock-outs let it
    # 10 from the bucket, then one per lock-out: 30+60+120+240 s, then one per 5 min.
    assert tries == 10 + 4 + (3600 - 450) // 300 + 1 == 25


def test_a_spray_from_many_addresses_is_bounded_and_limited_as_a_whole():
    clock = Clock()
    lim = LoginLimiter(attempts=3, per_seconds=60, lockout_base=30, lockout_max=300, max_clients=1000,
                       overflow_attempts=20, clock=clock)
    allowed = 0
    for i in range(100_000):
        key = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        if lim.check(key).allowed:
            allowed += 1
            lim.failed(key)
    assert len(lim) <= 1001  # the table, plus the shared overflow entry
    assert OVERFLOW_KEY in {k for k in lim._clients}
    # 1000 tracked clients got their own bucket; all the others shared 20 attempts.
    assert allowed == 1000 + 20
    assert not lim.check("192.0.2.1").allowed  # a new address is refused while the spray lasts
    # The spray stops: the shared lock-out ends and recovered clients are forgotten.
    clock.now += 30 + 900
    assert lim.check("192.0.2.1").allowed
    lim.failed("192.0.2.1")
    assert len(lim) == 1  # the table was swept of clients with full buckets


def test_clients_are_keyed_by_address_and_ipv6_by_its_64():
    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert client_key(None) == "unknown"


# ---------------------------------------------------------------------------- in the console


async def _wrong_logins(c: Console, count: int) -> list:
    return [await login(c, token="wrong-token") for _ in range(count)]


async def test_wrong_logins_lock_the_client_out_with_429_and_retry_after(console):
    answers = await _wrong_logins(console, 10)
    assert [r.status for r in answers] == [401] * 10
    r = await login(console)  # the right token during the lock-out is not even compared
    assert r.status == 429 and int(r.headers["Retry-After"]) == 30
    assert "try again in 30 s" in await r.text()
    assert SESSION_COOKIE not in {c.key for c in console.client.session.cookie_jar}
    # Bearer guessing is the same guessing: refused too, as JSON.
    r = await console.client.get("/api/v1/attacks", headers=console.auth)
    assert r.status == 429 and r.headers["Retry-After"] == "30" and "retry in" in (await r.json())["error"]
    metrics = console.ctx.metrics
    assert metrics.console_auth.get("login", "wrong") == 10
    assert metrics.console_auth.get("login", "refused") == 1 and metrics.console_auth.get("bearer", "refused") == 1
    assert metrics.console_lockouts.get() == 1
    got = samples(metrics.render())
    assert got['wallarm_node_console_auth_total{via="login",result="refused"}'] == 1
    assert got["wallarm_node_console_login_clients"] == 1


async def test_a_wrong_bearer_counts_and_a_logged_in_browser_keeps_working(console):
    await login(console)
    csrf = await csrf_of(console)
    bad = {"Authorization": "Bearer not-the-token"}
    statuses = [(await console.client.get("/api/v1/stats", headers=bad)).status for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    # The session cookie is not a token guess: the owner's open console is not locked out.
    assert (await console.client.get("/api/v1/attacks")).status == 200
    r = await console.client.put("/api/v1/mode", json={"default": "block"},
                                 headers={"X-CSRF-Token": csrf, **console.origin})
    assert r.status == 200


async def test_a_right_login_clears_the_failures(console):
    await _wrong_logins(console, 9)
    assert (await login(console)).status == 303
    assert len(console.client.app[GATE_KEY].limiter) == 0
    console.client.session.cookie_jar.clear()  # log in again from the same address
    answers = await _wrong_logins(console, 9)
    assert all(r.status == 401 for r in answers)  # a fresh bucket: nine more before a lock-out


# ---------------------------------------------------------------------------- every state-changing route


def _mutating_routes(console: Console) -> list[tuple[str, str]]:
    out = []
    for route in console.client.app.router.routes():
        if route.method in MUTATING or route.method == "*":
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter") or ""
            out.append((route.method, re.sub(r"\{[^}]+\}", "1", path)))
    return sorted(out)


PRE_SESSION = {("POST", "/login")}  # no session yet: its CSRF defence is the form nonce


@pytest.fixture
async def admin(console):  # type: ignore[no-untyped-def]
    """The node's whole console listener (health, metrics, console), as the node serves it."""
    client = TestClient(TestServer(make_admin_app(console.ctx), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Console(client, console.store, console.policy, console.ctx)
    finally:
        await client.close()


async def test_every_state_changing_route_refuses_cross_site_and_tokenless_requests(admin):
    console = admin
    routes = _mutating_routes(console)
    assert ("PUT", "/api/v1/mode") in routes and ("POST", "/logout") in routes and len(routes) >= 5
    assert not any(m == "*" for m, _ in routes), "a route accepting any method: list its methods"
    await login(console)
    csrf = await csrf_of(console)
    own = console.origin
    foreign = {"Origin": "http://evil.example"}
    for method, path in routes:
        label = f"{method} {path}"
        cases: dict[str, dict[str, str]] = {
            "foreign Origin": {"X-CSRF-Token": csrf, **foreign},
            "foreign Referer": {"X-CSRF-Token": csrf, "Referer": "http://evil.example/x"},
            "opaque Origin": {"X-CSRF-Token": csrf, "Origin": "null"},
            "malformed Origin": {"X-CSRF-Token": csrf, "Origin": "http://["},
            "Referer not a URL": {"X-CSRF-Token": csrf, "Referer": "\\\\evil"},
            "cross-site fetch": {"X-CSRF-Token": csrf, **own, "Sec-Fetch-Site": "cross-site"},
            "another port": {"X-CSRF-Token": csrf, "Origin": own["Origin"].rsplit(":", 1)[0] + ":1"},
            "bearer, foreign Origin": {**console.auth, **foreign},
        }
        if (method, path) not in PRE_SESSION:
            cases |= {
                "no CSRF token": {**own},
                "wrong CSRF token": {"X-CSRF-Token": csrf[:-2] + "xx", **own},
                "no Origin or Referer": {"X-CSRF-Token": csrf},
            }
        for name, headers in cases.items():
            r = await console.client.request(method, path, headers=headers, json={}, allow_redirects=False)
            assert r.status == 403, (label, name, r.status, await r.text())
        if (method, path) in PRE_SESSION:
            r = await console.client.request(method, path, headers=own, data={"token": TOKEN},
                                             allow_redirects=False)
            assert r.status == 403, (label, "no login nonce")
    # Nothing above changed anything, and the session is still there.
    assert (await console.policy.get_mode_settings()).default == "monitoring"
    assert (await console.client.get("/api/v1/attacks")).status == 200


MALFORMED_BODIES = [
    ("multipart/form-data; boundary=x", b"garbage"),
    ("multipart/form-data", b"--x\r\n"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n"),
    ("multipart/form-data; boundary=" + "x" * 100, b"--x"),
    ("application/x-www-form-urlencoded", b"%ff%fe=\xff\xfe&csrf_token=%zz"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"a=b"),
    ("application/json", b"{\"default\": "),
    ("application/json", b"\xff\xfe"),
    ("text/plain", b"\x00" * 10),
]


async def test_malformed_bodies_on_every_state_changing_route_are_4xx_never_5xx(admin):
    await login(admin)
    csrf = await csrf_of(admin)
    for method, path in _mutating_routes(admin):
        for ctype, body in MALFORMED_BODIES:
            for auth in ({"X-CSRF-Token": csrf}, admin.auth):
                headers = {"Content-Type": ctype, **admin.origin, **auth}
                r = await admin.client.request(method, path, data=body, headers=headers, allow_redirects=False)
                assert r.status < 500, (method, path, ctype, body[:40], r.status, (await r.text())[:200])


# ---------------------------------------------------------------------------- sessions and restarts


def _login_over_http(http: httpx.Client, token: str) -> str:
    page = http.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text).group(1)
    r = http.post("/login", data={"token": token, "login_nonce": nonce, "next": "/attacks"},
                  headers={"Origin": str(http.base_url).rstrip("/")})
    assert r.status_code == 303, r.text
    return r.cookies[SESSION_COOKIE]


@pytest.mark.e2e
def test_a_session_survives_a_node_restart_and_logout_ends_it(tmp_path):
    node = start_node(tmp_path, mode="monitoring")
    token = node.token
    try:
        with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10) as http:
            session_id = _login_over_http(http, token)
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">',
                             http.get("/settings").text).group(1)
    finally:
        node.stop()
    with sqlite3.connect(node.db_path) as conn:
        rows = conn.execute("SELECT id_hash FROM console_sessions").fetchall()
    assert rows == [(session_id_hash(session_id),)]  # the hash is stored, not the id
    assert session_id.encode() not in node.db_path.read_bytes()

    node = start_node(tmp_path, mode="monitoring", extra={"console_token": token})  # other ports, same db
    try:
        cookie = {SESSION_COOKIE: session_id}
        with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10, cookies=cookie) as http:
            assert http.get("/api/v1/attacks").status_code == 200
            assert http.get("/settings", follow_redirects=False).status_code == 200
            origin = {"Origin": node.console_url}
            r = http.put("/api/v1/mode", json={"default": "block"}, headers={"X-CSRF-Token": csrf, **origin})
            assert r.status_code == 200, r.text
            r = http.post("/logout", data={"csrf_token": csrf}, headers=origin, follow_redirects=False)
            assert r.status_code == 303
        with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10, cookies=cookie) as http:
            assert http.get("/api/v1/attacks").status_code == 401
    finally:
        node.stop()
    with sqlite3.connect(node.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM console_sessions").fetchone()[0] == 0


async def test_a_version_2_store_gains_the_sessions_table_and_keeps_its_attacks(tmp_path):
    from node.store.sqlite import SQLiteStore
    from tests.support.console import fill

    path = tmp_path / "v2.db"
    store = SQLiteStore(path)
    await store.open()
    await fill(store, 20)
    await store.close()
    with sqlite3.connect(path) as conn:  # a file written before sessions (and exceptions) were stored
        conn.execute("DROP TABLE console_sessions")
        conn.execute("DROP TABLE exceptions")
        conn.execute("PRAGMA user_version = 2")
    store = SQLiteStore(path)
    await store.open()
    try:
        sessions = SessionStore(store)
        session = await sessions.create()
        assert await sessions.get(session.id) == session
        page = await store.list_attacks(AttackFilter(), limit=50)
        assert len(page.items) == 20
    finally:
        await store.close()


@pytest.mark.e2e
def test_a_real_node_locks_a_guesser_out_and_counts_it(tmp_path):
    node = start_node(tmp_path, mode="monitoring")
    try:
        with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10) as http:
            wrong = {"Authorization": "Bearer guess-0123456789"}
            statuses = [http.get("/api/v1/mode", headers=wrong).status_code for _ in range(12)]
            assert statuses == [401] * 10 + [429] * 2
            right = {"Authorization": f"Bearer {node.token}"}
            r = http.get("/api/v1/mode", headers=right)
            assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 30
            metrics = http.get("/metrics").text
        # Another address (all of 127/8 is loopback) is another client: not locked out.
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10, transport=other) as http:
            assert http.get("/api/v1/mode", headers=right).status_code == 200
    finally:
        node.stop()
    got = samples(metrics)
    assert got['wallarm_node_console_auth_total{via="bearer",result="wrong"}'] == 10
    assert got['wallarm_node_console_auth_total{via="bearer",result="refused"}'] == 3
    assert got["wallarm_node_console_lockouts_total"] == 1
    assert got["wallarm_node_console_login_clients"] == 1
    assert "locked out for 30s" in node.output()


async def test_a_closed_store_is_503_for_cookie_sessions_not_a_crash(console):
    await login(console)
    await console.store.close()  # sessions cannot be read any more
    r = await console.client.get("/api/v1/attacks")
    assert r.status == 503 and "store" in (await r.json())["error"]
    r = await console.client.get("/attacks", allow_redirects=False)
    assert r.status == 503
