"""'Not an attack here' in a real browser against the real system: a node in block mode,
mitmdump with the connector in-line, a real upstream, headless chromium.

An attack is blocked (403); the user opens it in the console, clicks "Not an attack here" on its
finding and confirms; the same request then passes (200) within two seconds; the exception is in
Settings (who, when) and in GET /api/v1/exceptions; removing it in Settings blocks the request again.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import quote

import httpx
import pytest

from tests.support.browser import chromium, inline_system, log_in, shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SQLI = "1' OR 1=1--"


@pytest.fixture(scope="module")
def system(tmp_path_factory):  # noqa: ANN001, ANN201
    with inline_system(tmp_path_factory.mktemp("browser-exceptions"), "block") as parts:
        yield parts


def status_within(client: httpx.Client, path: str, want: int, seconds: float) -> tuple[int, float]:
    """Send `path` until it answers `want` or `seconds` pass: (last status, seconds taken)."""
    started = time.monotonic()
    while True:
        status = client.get(path).status_code
        taken = time.monotonic() - started
        if status == want or taken > seconds:
            return status, taken
        time.sleep(0.05)


def test_not_an_attack_here_lets_the_same_request_through(system) -> None:  # noqa: ANN001
    node, proxy = system
    client = httpx.Client(base_url=proxy.url, timeout=10, trust_env=False)
    api = httpx.Client(base_url=node.console_url, timeout=10, trust_env=False,
                       headers={"Authorization": f"Bearer {node.token}"})
    errors: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            marker = "fp-" + uuid.uuid4().hex[:10]
            path = f"/api/v1/products/{marker}"
            request = f"{path}?id={quote(SQLI)}"
            assert client.get(request).status_code == 403  # block mode: the node blocks it

            log_in(page, node.console_url, node.token)
            row = page.locator("#attacks tbody tr", has_text=marker)
            row.wait_for(timeout=3000)
            assert row.locator(".badge").inner_text() == "blocked"
            row.locator("a.path").click()
            page.wait_for_url(re.compile(r"/attacks/\d+$"))
            finding = page.locator("#hits tbody tr", has_text="query.id")
            rule_id = finding.locator("td").nth(2).inner_text()

            # -- "Not an attack here": a form prefilled from the attack, then confirm
            finding.locator("button.not-attack").click()
            form = page.locator("#except-form")
            form.wait_for(state="visible", timeout=2000)
            assert page.locator("#except-rule").inner_text() == rule_id
            assert page.locator("#except-type").inner_text() == "sqli"
            assert page.locator("#except-host").input_value() == "127.0.0.1"
            assert page.locator("#except-path").input_value() == path
            assert page.locator("#except-location").input_value() == "query.id"
            page.fill("#except-comment", "product ids look like SQL here")
            shot(page, "10-not-an-attack-form")
            page.click("#except-confirm")
            page.locator("#notice", has_text="created").wait_for(timeout=3000)
            assert form.is_hidden()
            shot(page, "11-exception-created")

            # -- the same request now passes through the proxy to the upstream
            status, taken = status_within(client, request, 200, 2.0)
            assert status == 200, f"still {status} after {taken:.2f}s"
            print(f"the excepted request passed {taken:.3f}s after the exception was created")
            assert client.get(f"/api/v1/products/{marker}?q={quote(SQLI)}").status_code == 403  # another parameter

            # -- listed in Settings with who and when, and in the API
            page.click("header nav >> text=Settings")
            page.wait_for_url(re.compile(r"/settings$"))
            listed = page.locator("#exception-list tbody tr", has_text=rule_id)
            listed.wait_for(timeout=3000)
            assert "session from 127.0.0.1" in listed.locator("td.created-by").inner_text()
            assert path in listed.inner_text() and "query.id" in listed.inner_text()
            assert "product ids look like SQL here" in listed.inner_text()
            shot(page, "12-exception-in-settings")
            items = api.get("/api/v1/exceptions").json()["items"]
            (made,) = [e for e in items if e["rule_id"] == rule_id]
            assert (made["host"], made["path_prefix"], made["location"]) == ("127.0.0.1", path, "query.id")
            assert made["created_by"] == "session from 127.0.0.1"
            assert made["comment"] == "product ids look like SQL here"

            # -- the requests it let through are counted (the node flushes them every second)
            deadline = time.monotonic() + 5
            while api.get("/api/v1/stats").json()["excepted_requests"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            page.reload()
            listed.locator("td.excepted-count").wait_for(timeout=3000)
            assert listed.locator("td.excepted-count").inner_text().startswith("1")
            page.goto(node.console_url + "/overview")
            page.locator("#count-excepted", has_text="1").wait_for(timeout=3000)  # "let through by exceptions"
            shot(page, "13-overview-excepted")
            page.goto(node.console_url + "/settings")

            # -- removed in Settings: an attack again
            listed.locator("button.exception-delete").click()
            page.locator("#notice", has_text=f"Removed exception #{made['id']}").wait_for(timeout=3000)
            status, taken = status_within(client, request, 403, 2.0)
            assert status == 403, f"still {status} after {taken:.2f}s"
            assert api.get("/api/v1/exceptions").json()["items"] == []
            assert errors == [], f"page errors: {errors}"
        finally:
            context.close()
            client.close()
            api.close()
