"""Headless Debian chromium through Playwright for the console's browser tests (loopback only).

Screenshots go to artifacts/screenshots/ so a reviewer can see what a test saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import NodeHandle, start_node
from tests.support.procs import REPO
from tests.support.proxy import Proxy, start_proxy, start_upstream, write_config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "screenshots"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (skips the test when the system has none)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (the CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, console_url: str, token: str, then: str = "/attacks") -> None:
    """Open `then`, get sent to the login page, log in with the token, land on `then`."""
    page.goto(console_url + then)
    assert "/login" in page.url
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(re.compile(re.escape(then) + "$"))


@contextmanager
def inline_system(tmp: Path, mode: str) -> Iterator[tuple[NodeHandle, Proxy]]:
    """What the browser tests drive: a real node in `mode`, mitmdump with the connector in-line
    in front of the test upstream; everything stopped afterwards, node last."""
    node = start_node(tmp, mode=mode)
    upstream = proxy = None
    try:
        upstream = start_upstream()
        config = write_config(tmp / "enable-plugin.json", node.endpoint_url, blocking=True)
        proxy = start_proxy(upstream.url, config)
        yield node, proxy
    finally:
        for part in (proxy, upstream):
            if part is not None:
                part.stop()
        node.stop()
