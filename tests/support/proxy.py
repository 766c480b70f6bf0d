"""Fixture helpers: a real mitmdump with the connector, a small real upstream, the fake node.

Everything listens on 127.0.0.1 with free ports; callers stop what they start (or use the
pytest fixtures in the test modules, which do). The upstream is runnable on its own:
`python -m tests.support.proxy --upstream 127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import MITMDUMP, REPO, ManagedProcess, free_port

SEED_CONFIG = {
    "name": "wallarm-plugin",
    "instance_name": "wallarm-protection",
    "protocols": ["http", "https"],
    "enabled": True,
    "config": {"blocking": True, "wallarm_node_address": "https://node.example:5050", "timeout_ms": 500},
}


def write_config(path: Path, node_url: str | list[str], **settings: object) -> Path:
    """Write an enable-plugin.json like the seed's, pointing at `node_url`, with overrides."""
    cfg = json.loads(json.dumps(SEED_CONFIG))
    cfg["config"]["wallarm_node_address"] = node_url
    top = {k: settings.pop(k) for k in ("protocols", "enabled", "instance_name") if k in settings}
    cfg.update(top)
    cfg["config"].update(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg))
    tmp.replace(path)  # atomic, like a careful editor
    return path


# ------------------------------------------------------------------------- processes
@dataclass
class Proxy:
    proc: ManagedProcess
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> int | None:
        return self.proc.stop()


def start_proxy(upstream: str, config: Path | None, *extra: str, admin_port: int | None = None,
                name: str = "mitmdump", wait: bool = True, cwd: Path = REPO) -> Proxy:
    """mitmdump in reverse mode in front of `upstream` (e.g. http://127.0.0.1:9000) on a free port."""
    admin_port = admin_port or free_port()
    cmd = [MITMDUMP, "--mode", f"reverse:{upstream}@127.0.0.1:0", "-s", str(REPO / "addon" / "wallarm.py"),
           "--set", f"wallarm_admin_listen=127.0.0.1:{admin_port}", "--set", "flow_detail=0"]
    if config is not None:
        cmd += ["--set", f"wallarm_config={config}"]
    cmd += list(extra)
    proc = ManagedProcess(name, cmd, cwd=cwd)
    port = 0
    if wait:
        try:
            m = proc.wait_for_log(r"listening at 127\.0\.0\.1:(\d+)", timeout=30)
            port = int(m.group(1))
            if config is not None:
                proc.wait_http(f"http://127.0.0.1:{admin_port}/plugins", timeout=15)
        except Exception:
            proc.stop()
            raise
    return Proxy(proc, port, admin_port)


@dataclass
class FakeNodeProc:
    proc: ManagedProcess
    port: int
    control_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def set_mode(self, mode: str, delay_ms: int | None = None) -> None:
        data: dict[str, object] = {"mode": mode}
        if delay_ms is not None:
            data["delay_ms"] = delay_ms
        _post_json(f"http://127.0.0.1:{self.control_port}/mode", data)

    def received(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/received", timeout=5) as r:
            return json.load(r)

    def clear(self) -> None:
        _post_json(f"http://127.0.0.1:{self.control_port}/clear", {})

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/stats", timeout=5) as r:
            return json.load(r)

    def stop(self) -> int | None:
        return self.proc.stop()


def start_fake_node(mode: str = "match", delay_ms: int = 2000) -> FakeNodeProc:
    port, control = free_port(), free_port()
    proc = ManagedProcess("fake-node", [sys.executable, "-m", "tests.support.fake_node", "--listen",
                                        f"127.0.0.1:{port}", "--control", f"127.0.0.1:{control}",
                                        "--mode", mode, "--delay-ms", str(delay_ms)])
    try:
        proc.wait_http(f"http://127.0.0.1:{control}/ready")
    except Exception:
        proc.stop()
        raise
    return FakeNodeProc(proc, port, control)


@dataclass
class Upstream:
    proc: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/_seen", timeout=5) as r:
            return json.load(r)

    def tag_counts(self) -> dict[str, int]:
        """How many times each `X-Test-Seq` tag reached the upstream (tagged requests only)."""
        with urllib.request.urlopen(f"{self.url}/_tags", timeout=5) as r:
            return json.load(r)

    def stop(self) -> int | None:
        return self.proc.stop()


def start_upstream(port: int | None = None) -> Upstream:
    """The test upstream on `port` (a free one by default; a fixed one to restart it in place)."""
    port = port or free_port()
    proc = ManagedProcess("upstream", [sys.executable, "-m", "tests.support.proxy", "--upstream", f"127.0.0.1:{port}"])
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/_seen")
    except Exception:
        proc.stop()
        raise
    return Upstream(proc, port)


def _post_json(url: str, data: dict) -> None:
    req = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


# ------------------------------------------------------------------------- the upstream
def upstream_body(path: str) -> bytes:
    """Deterministic answer for a path, so tests can compare what the client got byte for byte."""
    return json.dumps({"path": path, "items": [{"id": i, "name": f"item-{i}"} for i in range(3)]},
                      separators=(",", ":")).encode()


TAG_HEADER = "X-Test-Seq"  # a unique tag per client request: the upstream counts each one it gets


def _upstream_app():  # type: ignore[no-untyped-def]
    from collections import Counter

    from aiohttp import WSMsgType, web

    seen: list[str] = []
    tags: Counter[str] = Counter()

    async def tags_handler(request: web.Request) -> web.Response:
        return web.json_response(tags)

    async def seen_handler(request: web.Request) -> web.Response:
        return web.json_response(seen)

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        seen.append(request.path_qs)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        return ws

    async def big_handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        size = int(request.query.get("size", "1000000"))
        return web.Response(body=b"x" * size, content_type="application/octet-stream")

    async def any_handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(request.path_qs)
        # X-Upstream-Host: the Host this upstream saw (routing tests check preserve_host)
        seen_host = request.headers.get("Host", "")
        tag = request.headers.get(TAG_HEADER)
        if tag is not None:
            tags[tag] += 1
        if request.method == "POST":
            return web.json_response({"received": len(body)}, headers={"X-Upstream": "yes",
                                                                         "X-Upstream-Host": seen_host})
        return web.Response(body=upstream_body(request.path_qs), content_type="application/json",
                            headers={"X-Upstream": "yes", "Set-Cookie": "s=1; Path=/", "X-Upstream-Host": seen_host})

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_get("/_seen", seen_handler)
    app.router.add_get("/_tags", tags_handler)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/big", big_handler)
    app.router.add_route("*", "/{tail:.*}", any_handler)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description="test upstream")
    p.add_argument("--upstream", required=True, help="HOST:PORT")
    args = p.parse_args()
    from aiohttp import web

    host, _, port = args.upstream.rpartition(":")
    web.run_app(_upstream_app(), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()

