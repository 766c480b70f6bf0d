"""Start a real node process (`python -m node --config ...`) for a test, on free loopback ports.

    node = start_node(tmp_path, mode="monitoring")
    try:
        ... POST to node.endpoint_url, GET node.console_url + "/api/v1/attacks" with node.token ...
    finally:
        node.stop()

`extra` is merged into the config file (e.g. {"ip_lists": {"deny": ["10.0.0.0/8"]}});
`tls=(cert_pem, key_pem)` serves the endpoint over TLS. Calling `start_node` again with the
same `tmp_path` reuses the same database (restart tests); pass the first handle's `port` and
`console_port` to restart it on the same addresses.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import ManagedProcess, free_port


@dataclass
class NodeHandle:
    proc: ManagedProcess
    endpoint_url: str  # http(s)://127.0.0.1:PORT/  (POST protocol messages here)
    console_url: str  # http://127.0.0.1:PORT  (console, /api/v1, /live, /ready, /metrics)
    token: str  # console token (Authorization: Bearer ...)
    db_path: Path
    config_path: Path
    port: int
    console_port: int

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        return self.proc.stop(sig, timeout)

    def output(self) -> str:
        return self.proc.output()


def start_node(tmp_path: Path, mode: str = "block", extra: dict[str, Any] | None = None,
               tls: tuple[str | Path, str | Path] | None = None, timeout: float = 30.0,
               port: int | None = None, console_port: int | None = None) -> NodeHandle:
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    db_path = tmp_path / "node.db"
    port, console_port = port or free_port(), console_port or free_port()
    token = secrets.token_urlsafe(24)
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "console_listen": f"127.0.0.1:{console_port}",
        "db": str(db_path),
        "mode": mode,
        "console_token": token,
        "instance": "test-node",
    }
    if tls is not None:
        config["tls_cert"], config["tls_key"] = str(tls[0]), str(tls[1])
    config.update(extra or {})
    token = config["console_token"]
    config_path = tmp_path / f"node-{port}.json"  # JSON is valid YAML too; one file per start
    config_path.write_text(json.dumps(config, indent=2), "utf-8")
    proc = ManagedProcess("node", [sys.executable, "-m", "node", "--config", str(config_path)])
    console_url = f"http://127.0.0.1:{console_port}"
    try:
        proc.wait_http(console_url + "/ready", timeout=timeout)
    except Exception:
        proc.stop()
        raise
    scheme = "https" if tls is not None else "http"
    return NodeHandle(proc, f"{scheme}://127.0.0.1:{port}/", console_url, token, db_path, config_path, port,
                      console_port)


class NodeClient:
    """Speaks protocol v1 to a node endpoint, like the connector does (one keep-alive client).

        with NodeClient(node) as c:
            status, verdict = c.request("GET", "/etc/passwd", ip="192.0.2.1")
    """

    def __init__(self, node: NodeHandle | str, verify: Any = True, secret: str | None = None):
        import httpx

        self.url = node.endpoint_url if isinstance(node, NodeHandle) else node
        self.secret = secret
        self.http = httpx.Client(verify=verify, timeout=30.0, trust_env=False)

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _headers(self, request_id: str, msgtype: str, ip: str | None, host: str | None, delivery: str) -> dict[str, str]:
        from wallarm_wire import protocol as p

        h = {p.H_REQUEST_ID: request_id, "Content-Type": f"message/http; msgtype={msgtype}", p.H_DELIVERY: delivery,
             p.H_CONNECTOR_TYPE: p.CONNECTOR_TYPE, p.H_INSTANCE: "test-connector"}
        if ip is not None:
            h[p.H_FORWARDED_FOR] = ip
        if host is not None:
            h[p.H_FORWARDED_HOST] = host
        if self.secret is not None:
            h[p.H_SECRET] = self.secret
        return h

    def request(self, method: str, target: str, *, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                ip: str = "192.0.2.10", host: str = "api.test", delivery: str = "sync",
                request_id: str | None = None) -> tuple[int, dict[str, Any]]:
        from wallarm_wire import protocol as p

        rid = request_id or p.new_request_id()
        fields = [(b"Host", host.encode())] + [(k.encode(), v.encode()) for k, v in (headers or [])]
        data = p.encode_request(p.RequestMessage(method, target, fields, body))
        r = self.http.post(self.url, content=data, headers=self._headers(rid, "request", ip, host, delivery))
        return r.status_code, r.json()

    def response(self, request_id: str, status: int, *, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"", delivery: str = "async") -> tuple[int, dict[str, Any]]:
        from wallarm_wire import protocol as p

        fields = [(k.encode(), v.encode()) for k, v in (headers or [])]
        data = p.encode_response(p.ResponseMessage(status, fields, body, "OK"))
        r = self.http.post(self.url, content=data, headers=self._headers(request_id, "response", None, None, delivery))
        return r.status_code, r.json()

    def raw(self, data: bytes, headers: dict[str, str]) -> Any:
        """POST anything (malformed-input tests); returns the httpx.Response."""
        return self.http.post(self.url, content=data, headers=headers)


async def stored_attacks(db_path: Path, limit: int = 1000) -> list[Any]:
    """Every attack record in a node's store, newest first, read through the Store interface."""
    from node.store.base import AttackFilter
    from node.store.sqlite import SQLiteStore

    store = SQLiteStore(db_path)
    await store.open()
    try:
        out: list[Any] = []
        cursor = None
        while True:
            page = await store.list_attacks(AttackFilter(), cursor, limit=min(limit, 200))
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None or len(out) >= limit:
                return out
    finally:
        await store.close()
