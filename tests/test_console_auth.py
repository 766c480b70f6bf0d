"""Console access: token resolution, browser login, sessions, CSRF, headers, escaping."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from wallarm_wire.protocol import AttackInfo
from tests.support.console import TOKEN, Console
from node.console.auth import ENV_TOKEN, SessionStore, resolve_console_token, session_id_hash
from node.store.base import AttackRecord
from node.store.sqlite import SQLiteStore

XSS = "<img src=x onerror=alert(1)>"
STATIC = Path(__file__).resolve().parents[1] / "node" / "console" / "static"


# ---------------------------------------------------------------------------- token resolution


def test_token_from_config_wins_over_env(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_TOKEN, "from-the-environment-123456")
    token_args = ("from-the-config-1234567", tmp_path / "n.db")
    assert resolve_console_token(*token_args) == "from-the-config-1234567"
    assert not (tmp_path / "n.db.console-token").exists()


def test_token_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_TOKEN, "from-the-environment-123456")
    assert resolve_console_token(None, tmp_path / "n.db") == \
        "from-the-environment-123456"


def test_token_generated_once_private_and_reused(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    token_args = (None, tmp_path / "n.db")
    first = resolve_console_token(*token_args)
    path = tmp_path / "n.db.console-token"
    assert path.read_text().strip() == first and len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert str(path) in out and first not in out  # says where to read it, does not print it
    assert resolve_console_token(*token_args) == first  # a restart keeps the same token


def test_loose_token_file_is_tightened_and_empty_one_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    path = tmp_path / "n.db.console-token"
    path.write_text("kept-token-abcdefghijklmnop\n")
    os.chmod(path, 0o644)
    token_args = (None, tmp_path / "n.db")
    assert resolve_console_token(*token_args) == "kept-token-abcdefghijklmnop"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        resolve_console_token(*token_args)


async def test_session_store_hashes_expires_and_is_bounded(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    now = [1_800_000_000.0]
    try:
        sessions = SessionStore(store, idle_seconds=60, max_age_seconds=3600, max_sessions=3,
                                renew_after_seconds=10, clock=lambda: now[0])
        made = []
        for _ in range(5):
            made.append(await sessions.create())
            now[0] += 1
        await store.flush()
        with sqlite3.connect(tmp_path / "s.db") as conn:
            rows = conn.execute("SELECT id_hash FROM console_sessions").fetchall()
        assert len(rows) == 3  # bounded: the two oldest made room
        assert {r[0] for r in rows} == {session_id_hash(s.id) for s in made[2:]}
        assert not any(s.id.encode() in r[0] for s in made for r in rows)  # only hashes are stored
        assert await sessions.get(made[0].id) is None
        got = await sessions.get(made[-1].id)
        assert got == made[-1] and got.csrf_token != got.id
        # Used within the idle time: kept alive past the first idle deadline.
        now[0] += 50
        assert await sessions.get(made[-1].id) is not None
        now[0] += 50
        assert await sessions.get(made[-1].id) is not None
        assert await sessions.get(made[2].id) is None  # idle > 60 s
        now[0] += 61
        assert await sessions.get(made[-1].id) is None
        assert await sessions.sweep() == 3  # made[2..4]: expired, not yet deleted
        assert await sessions.sweep() == 0
        assert await sessions.get("") is None and await sessions.get(None) is None
        assert await sessions.get("x" * 10_000) is None
        # The absolute limit holds however busy the session is.
        s = await sessions.create()
        for _ in range(70):
            now[0] += 55
            alive = await sessions.get(s.id)
        assert alive is None and now[0] - 1_800_000_000.0 > 3600
        await sessions.delete(made[-1].id)  # deleting an unknown session is fine
    finally:
        await store.close()


# ---------------------------------------------------------------------------- browser login


async def login(c: Console, token: str = TOKEN, next_path: str = "/attacks"):
    r = await c.client.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', await r.text()).group(1)
    return await c.client.post("/login", data={"token": token, "login_nonce": nonce, "next": next_path},
                               allow_redirects=False)


async def csrf_of(c: Console, page: str = "/attacks") -> str:
    r = await c.client.get(page)
    assert r.status == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', await r.text()).group(1)


async def test_pages_redirect_to_login_without_a_session(console):
    for page in ("/attacks", "/attacks/1", "/overview", "/settings"):
        r = await console.client.get(page, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login?next=")
    # A bearer token is for scripts: pages still want a browser session.
    r = await console.client.get("/attacks", headers=console.auth, allow_redirects=False)
    assert r.status == 303


async def test_login_with_wrong_token_or_without_form_nonce_fails(console):
    r = await login(console, token="wrong")
    assert r.status == 401 and "Wrong console token" in await r.text()
    assert "wallarm_console_session" not in {c.key for c in console.client.session.cookie_jar}
    # A login POST from another site carries no nonce cookie/field pair: refused.
    r = await console.client.post("/login", data={"token": TOKEN, "login_nonce": "forged"}, allow_redirects=False)
    assert r.status == 403
    assert "wallarm_console_session" not in {c.key for c in console.client.session.cookie_jar}


async def test_login_sets_a_strict_httponly_session_and_opens_pages(console):
    r = await login(console, next_path="/overview")
    assert r.status == 303 and r.headers["Location"] == "/overview"
    cookie = r.cookies["wallarm_console_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert TOKEN not in r.headers["Location"]
    for page in ("/attacks", "/overview", "/settings"):
        r = await console.client.get(page)
        assert r.status == 200 and "<script src=\"/static/" in await r.text()
    r = await console.client.get("/api/v1/attacks")  # the pages' JS uses the cookie
    assert r.status == 200


async def test_login_never_redirects_off_site(console):
    r = await login(console, next_path="//evil.example/steal")
    assert r.headers["Location"] == "/attacks"


async def test_csrf_on_state_changes_with_a_cookie_session(console):
    await login(console)
    csrf = await csrf_of(console)
    body = {"default": "block"}
    own = console.origin
    r = await console.client.put("/api/v1/mode", json=body, headers=own)
    assert r.status == 403 and "CSRF" in (await r.json())["error"]
    r = await console.client.put("/api/v1/mode", json=body, headers={"X-CSRF-Token": "wrong", **own})
    assert r.status == 403
    r = await console.client.post("/api/v1/iplists", json={"list": "deny", "network": "10.1.1.1"}, headers=own)
    assert r.status == 403
    r = await console.client.delete("/api/v1/iplists/1", headers=own)
    assert r.status == 403
    r = await console.client.put("/api/v1/mode", json=body,
                                 headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert r.status == 403
    # The right token without any Origin or Referer: not what a browser sends, refused.
    r = await console.client.put("/api/v1/mode", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status == 403
    assert (await console.policy.get_mode_settings()).default == "monitoring"
    r = await console.client.put("/api/v1/mode", json=body, headers={"X-CSRF-Token": csrf, **own})
    assert r.status == 200
    assert (await console.policy.get_mode_settings()).default == "block"
    referer = {"Referer": own["Origin"] + "/settings"}  # Referer alone will do (same origin)
    r = await console.client.put("/api/v1/mode", json=body, headers={"X-CSRF-Token": csrf, **referer})
    assert r.status == 200


async def test_logout_needs_csrf_and_ends_the_session(console):
    await login(console)
    csrf = await csrf_of(console)
    r = await console.client.post("/logout", data={"csrf_token": "wrong"}, headers=console.origin,
                                  allow_redirects=False)
    assert r.status == 403
    r = await console.client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 403  # no Origin
    r = await console.client.post("/logout", data={"csrf_token": csrf}, headers=console.origin,
                                  allow_redirects=False)
    assert r.status == 303
    r = await console.client.get("/attacks", allow_redirects=False)
    assert r.status == 303
    r = await console.client.get("/api/v1/attacks")
    assert r.status == 401


async def test_security_headers_and_strict_csp(console):
    await login(console)
    for path in ("/login", "/attacks", "/api/v1/attacks", "/static/attacks.js"):
        r = await console.client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "same-origin"
    r = await console.client.get("/api/v1/attacks")
    assert r.headers["Cache-Control"] == "no-store"


async def test_pages_have_no_inline_script(console):
    await login(console)
    for page in ("/login", "/attacks", "/overview", "/settings"):
        html = await (await console.client.get(page)).text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), page
        assert not re.search(r"\son[a-z]+=", html), page


def test_static_js_never_builds_html_from_strings():
    for js in STATIC.glob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{js.name} uses {sink}"


async def test_attacker_strings_render_as_text_on_the_detail_page(console):
    console.store.add_attack(AttackRecord(
        time=1_790_000_000.0, request_id="ab" * 16, client_ip="198.51.100.9", host="api.example.com",
        method="GET", path="/search?q=" + XSS, action="monitored", mode="monitoring",
        hits=[AttackInfo("xss", "query.q", "xss-1", XSS, 9)],
        request_excerpt=f"GET /search?q={XSS} HTTP/1.1\r\nHost: api.example.com\r\n"))
    await console.store.flush()
    page = await (await console.client.get("/api/v1/attacks", headers=console.auth)).json()
    attack_id = page["items"][0]["id"]
    assert page["items"][0]["path"] == "/search?q=" + XSS  # the API returns the raw value as JSON text
    await login(console)
    html = await (await console.client.get(f"/attacks/{attack_id}")).text()
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    r = await console.client.get("/attacks/424242")
    assert r.status == 404


async def test_static_files_are_served_without_login(console):
    for name in ("console.css", "common.js", "attacks.js", "overview.js", "settings.js"):
        r = await console.client.get(f"/static/{name}")
        assert r.status == 200, name
    r = await console.client.get("/static/../auth.py")
    assert r.status in (403, 404)


async def test_mounted_on_the_node_admin_app_health_stays_open(console):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from node.admin import make_admin_app

    client = TestClient(TestServer(make_admin_app(console.ctx), host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await client.get("/live")).status == 200
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/api/v1/attacks")).status == 401
        r = await client.get("/api/v1/attacks", headers=console.auth)
        assert r.status == 200
        r = await client.get("/", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/attacks"
        assert isinstance(client.app, web.Application)
    finally:
        await client.close()


def test_unusable_token_location_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # the DB's directory is a file: the token cannot be stored there
    with pytest.raises(ValueError, match="console token file"):
        resolve_console_token(None, not_a_dir / "n.db")
