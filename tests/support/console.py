"""In-process console for API tests: a real SQLiteStore, a real Policy, the real aiohttp app."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wallarm_wire.protocol import AttackInfo
from node.console.app import setup_console
from node.context import NodeContext
from node.detect.engine import Engine
from node.metrics import NodeMetrics
from node.policy import Policy
from node.settings import NodeSettings
from node.store.base import AttackRecord
from node.store.sqlite import SQLiteStore

TOKEN = "test-console-token-0123456789abcdef"


@dataclass
class Console:
    client: TestClient
    store: SQLiteStore
    policy: Policy
    ctx: NodeContext

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    @property
    def origin(self) -> dict[str, str]:
        """The Origin header a browser sends with the console's own state changes."""
        url = self.client.make_url("/")
        return {"Origin": f"{url.scheme}://{url.host}:{url.port}"}


async def start_console(tmp_path: Path, mode: str = "monitoring") -> Console:
    store = SQLiteStore(tmp_path / "console.db")
    await store.open()
    settings = NodeSettings(db=str(tmp_path / "console.db"), mode=mode, console_token=TOKEN)
    policy = Policy(store, settings.mode_settings())
    await policy.load(settings.mode_settings(), forced=False)
    ctx = NodeContext(settings=settings, store=store, policy=policy, engine=Engine(), metrics=NodeMetrics(),
                      console_token=TOKEN)
    app = web.Application()
    setup_console(app, ctx)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Console(client, store, policy, ctx)


async def stop_console(c: Console) -> None:
    await c.client.close()
    await c.store.close()


TYPES = ["sqli", "xss", "ptrav", "rce", "scanner"]
HOSTS = ["api.example.com", "shop.example.com", "admin.example.com"]
PATHS = ["/api/users", "/api/orders", "/login", "/search", "/admin/export", "/files/download"]


def make_record(i: int, now: float, rng: random.Random) -> AttackRecord:
    types = rng.sample(TYPES, rng.choice([1, 1, 2]))
    return AttackRecord(
        time=now - i * 7.0,
        request_id=f"{i:032x}",
        client_ip=f"203.0.113.{i % 50}",
        host=HOSTS[i % len(HOSTS)],
        method=rng.choice(["GET", "POST"]),
        path=f"{PATHS[i % len(PATHS)]}?id={i}",
        hits=[AttackInfo(t, "query.id", f"{t}-{100 + i % 7}", f"payload {t} {i}", 5) for t in types],
        action="blocked" if i % 3 == 0 else "monitored",
        mode="block",
        response_status=403 if i % 3 == 0 else 200,
        request_excerpt=f"GET {PATHS[i % len(PATHS)]}?id={i} HTTP/1.1\r\nHost: x\r\nCookie: ***\r\n",
    )


async def fill(store: SQLiteStore, count: int, now: float | None = None, seed: int = 7) -> list[AttackRecord]:
    now = time.time() if now is None else now
    rng = random.Random(seed)
    records = [make_record(i, now, rng) for i in range(count)]
    for r in records:
        store.add_attack(r)
    await store.flush()
    return records
