"""The Admin API inside the real connector (in-process, on its real status listener): a change is
applied at once, not on the watcher's next poll, and the token option guards off-loopback use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from mitmproxy.test import taddons

from addon.connector import ADMIN_TOKEN_ENV, WallarmConnector
from addon.watch import ConfigWatcher
from tests.support.fake_node import FakeNode
from tests.support.procs import free_port
from tests.support.proxy import write_config
from tests.test_addon_connector import http_flow, listening_connector


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    n = FakeNode("127.0.0.1", free_port(), mode="match")
    await n.start_node()
    yield n
    await n.stop_node()


async def test_a_write_is_applied_before_the_watcher_could_see_it(tmp_path: Path, node: FakeNode,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a watcher that would wait an hour: whatever changes the running config, it is not the poll
    monkeypatch.setattr(ConfigWatcher.__init__, "__defaults__", (3600.0,))
    path = write_config(tmp_path / "enable-plugin.json", f"http://127.0.0.1:{node.port}/")
    async with listening_connector(path) as (addon, tctx, admin):
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{admin}/services", data={"name": "up", "url": "http://127.0.0.1:9999/base"})
            assert r.status == 201
            r = await s.post(f"{admin}/services/up/routes", json={"paths": ["/api"]})
            assert r.status == 201
        assert addon.runtime is not None and addon.runtime.router is not None
        f = http_flow("/api/items")
        await tctx.cycle(addon, f)
        assert (f.request.host, f.request.port, f.request.path) == ("127.0.0.1", 9999, "/base/items")
        g = http_flow("/elsewhere")
        await tctx.cycle(addon, g)
        assert g.response is not None and g.response.status_code == 404
        assert addon.metrics.config_reloads == 2  # one per write, none from the watcher


async def test_token_comes_from_the_option_or_the_environment(tmp_path: Path, node: FakeNode,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path / "enable-plugin.json", f"http://127.0.0.1:{node.port}/")
    addon = WallarmConnector()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, wallarm_config=str(path), wallarm_admin_listen="")
        monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-env")
        assert addon._admin_token() == "from-env"
        tctx.configure(addon, wallarm_admin_token="from-option")
        assert addon._admin_token() == "from-option"
