"""The console in a real browser against the real system: node + mitmdump with the addon + upstream.

Headless Debian chromium through Playwright, loopback only. Screenshots go to
artifacts/screenshots/ so a reviewer can see what the test saw.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from urllib.parse import quote

import httpx
import pytest

from tests.support.browser import chromium, inline_system, shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)>"
SQLI = "1' OR 1=1--"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with inline_system(tmp_path_factory.mktemp("browser"), "monitoring") as parts:
        yield parts


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def raw_get(port: int, target: str) -> int:
    """Send a request line exactly as given (an HTTP library would percent-encode it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(1024)
    return int(head.split(b" ", 2)[1])


def row_for(page, marker: str):
    return page.locator("#attacks tbody tr", has_text=marker)


def test_console_end_to_end(system, browser):
    node, proxy = system
    client = httpx.Client(base_url=proxy.url, timeout=10, trust_env=False)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # -- log in: the console sends us to the login page and back
        page.goto(node.console_url + "/attacks")
        assert "/login" in page.url
        shot(page, "01-login")
        page.fill("#token", "not-the-token")
        page.click("#login")
        assert page.locator(".error").inner_text() == "Wrong console token."
        page.fill("#token", node.token)
        page.click("#login")
        page.wait_for_url(re.compile(r"/attacks$"))
        assert node.token not in page.url

        # -- an attack through the real proxy shows up in the list within 2 s (no reload)
        marker = "probe-" + uuid.uuid4().hex[:10]
        sent = time.monotonic()
        r = client.get(f"/api/v1/products/{marker}?id={quote(SQLI)}")
        assert r.status_code == 200  # monitoring: the upstream answered
        row = row_for(page, marker)
        row.wait_for(timeout=2000)
        appeared = time.monotonic() - sent
        assert appeared < 2.0, f"attack appeared after {appeared:.2f}s"
        assert "sqli" in row.locator("td.types").inner_text()
        assert row.locator(".badge").inner_text() == "monitored"
        assert row.locator("td").nth(1).inner_text() == "127.0.0.1"
        shot(page, "02-attack-listed")

        # -- its detail: where the payload was, rule id, masked request, request id
        row.locator("a.path").click()
        page.wait_for_url(re.compile(r"/attacks/\d+$"))
        hits = page.locator("#hits tbody").inner_text()
        assert "sqli" in hits and "query.id" in hits and SQLI in hits
        assert re.fullmatch(r"[0-9a-f]{32}", page.locator("#request-id").inner_text())
        assert marker in page.locator("#request-excerpt").inner_text()
        shot(page, "03-attack-detail")

        # -- filters: a second attack of another type, then filter by type and by IP
        other = "ptrav-" + uuid.uuid4().hex[:8]
        assert client.get(f"/static/{other}/..%2f..%2f..%2fetc%2fpasswd").status_code in (200, 404)
        page.goto(node.console_url + "/attacks")
        row_for(page, other).wait_for(timeout=3000)
        page.fill("#filters input[name=type]", "sqli")
        page.click("#filters button[type=submit]")
        row_for(page, other).wait_for(state="detached", timeout=3000)
        assert row_for(page, marker).count() == 1
        assert "type=sqli" in page.url
        for types in page.locator("#attacks td.types").all_inner_texts():
            assert "sqli" in types
        shot(page, "04-filter-type")
        page.fill("#filters input[name=type]", "")
        page.fill("#filters input[name=ip]", "192.0.2.123")
        page.click("#filters button[type=submit]")
        page.locator("#empty").wait_for(state="visible", timeout=3000)
        assert page.locator("#attacks tbody tr").count() == 0
        page.fill("#filters input[name=ip]", "127.0.0.1")
        page.select_option("#filters select[name=action]", "monitored")
        page.click("#filters button[type=submit]")
        row_for(page, marker).wait_for(timeout=3000)
        shot(page, "05-filter-ip-action")

        # -- switch the node to block in Settings; the next attack is blocked
        page.click("header nav >> text=Settings")
        page.wait_for_url(re.compile(r"/settings$"))
        page.locator("#mode-default option[value=block]").wait_for(state="attached", timeout=3000)
        assert page.locator("#mode-default").input_value() == "monitoring"
        page.select_option("#mode-default", "block")
        page.click("#save-mode")
        page.locator("#notice", has_text="default mode block").wait_for(timeout=3000)
        shot(page, "06-settings-block")

        blocked_marker = "blocked-" + uuid.uuid4().hex[:8]
        r = client.get(f"/api/v1/products/{blocked_marker}?id={quote(SQLI)}")
        assert r.status_code == 403
        page.goto(node.console_url + "/attacks")
        row = row_for(page, blocked_marker)
        row.wait_for(timeout=3000)
        assert row.locator(".badge").inner_text() == "blocked"
        shot(page, "07-attack-blocked")

        # -- an XSS payload is shown as text and never runs
        xss_marker = "xss-" + uuid.uuid4().hex[:8]
        r = client.get(f"/api/v1/products/{xss_marker}?q={quote(XSS)}")
        assert r.status_code == 403
        row = row_for(page, xss_marker)
        row.wait_for(timeout=3000)  # arrives through polling on the open list page
        assert "xss" in row.locator("td.types").inner_text()
        # the list shows a payload sent raw in the path as text too
        raw_xss = "<img/src=x/onerror=alert(2)>"
        raw_marker = "raw-" + uuid.uuid4().hex[:8]
        assert raw_get(proxy.port, f"/api/v1/products/{raw_marker}{raw_xss}") == 403
        raw_row = row_for(page, raw_marker + raw_xss)
        raw_row.wait_for(timeout=3000)
        assert raw_row.locator("a.path").inner_text().endswith(raw_xss)
        assert page.locator("#attacks img").count() == 0
        row.locator("a.path").click()
        page.wait_for_url(re.compile(r"/attacks/\d+$"))
        assert XSS in page.locator("#hits tbody").inner_text()
        assert page.locator("img").count() == 0
        page.wait_for_timeout(1500)  # give an injected handler every chance to fire
        shot(page, "08-xss-as-text")
        page.goto(node.console_url + "/attacks?type=xss")
        row_for(page, xss_marker).wait_for(timeout=3000)
        page.goto(node.console_url + "/overview")
        page.locator("#chart-type svg rect").first.wait_for(timeout=3000)
        shot(page, "09-overview")
        assert page.locator("img").count() == 0

        # -- log out: a real browser's form POST passes the CSRF and Origin checks
        page.click("form.logout button")
        page.wait_for_url(re.compile(r"/login$"))
        page.goto(node.console_url + "/settings")
        assert "/login" in page.url  # the session is gone
        assert dialogs == [], f"a dialog fired: {dialogs}"
        assert errors == [], f"page errors: {errors}"
    finally:
        context.close()
        client.close()
