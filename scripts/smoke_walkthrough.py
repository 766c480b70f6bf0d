#!/usr/bin/env python3
"""The seed's walkthrough as a smoke test against a running system (e.g. `make run`).

Kong's walkthrough: deploy the node, run the gateway with the plugin, `curl
http://localhost:8000/etc/passwd`, see the attack in the console, blocked in blocking mode; and
`curl -s http://localhost:8001/plugins | grep wallarm-plugin` to check the plugin version.
Here, step by step:
  1. a benign request through the proxy reaches the upstream (the demo API answers JSON);
  2. `GET /etc/passwd` through the proxy is answered 403 by the connector;
  3. the attack appears in the console's API (bearer token) within a few seconds, as blocked;
  4. the connector's status listener `/plugins` names `wallarm-plugin` and its version.
Exit 0 when every step passes, 1 otherwise (each failure is printed).

Token: --token, else $WALLARM_CONSOLE_TOKEN, else the file the node wrote next to its database
(var/node.db.console-token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


class Walkthrough:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.failures: list[str] = []

    def step(self, name: str, ok: bool, detail: str) -> bool:
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        if not ok:
            self.failures.append(name)
        return ok

    def benign(self) -> None:
        r = fetch(self.a.proxy + self.a.benign_path)
        ok = r.status == 200
        detail = f"GET {self.a.benign_path} -> {r.status}"
        if ok and self.a.expect_demo:
            try:
                body = r.json()
                ok = isinstance(body, dict) and isinstance(body.get("items"), list)
                detail += f", demo API answered {len(body.get('items', []))} items" if ok else ", not the demo API's JSON"
            except ValueError:
                ok, detail = False, detail + ", body is not JSON"
        self.step("benign request reaches the upstream", ok, detail)

    def attack(self) -> str:
        """Send the seed's attack; return the request id the connector put on its answer."""
        r = fetch(self.a.proxy + "/etc/passwd")
        rid = r.headers.get("x-wallarm-request-id", "")
        self.step("GET /etc/passwd is blocked", r.status == 403,
                  f"-> {r.status} {r.body[:80]!r}" + (f" request_id={rid}" if rid else ""))
        return rid

    def console(self, since: float, request_id: str) -> None:
        token = self.a.token
        if not token:
            self.step("attack appears in the console", False,
                      "no console token (--token, WALLARM_CONSOLE_TOKEN or the token file)")
            return
        query = urllib.parse.urlencode({"q": "/etc/passwd", "limit": 50})
        url = f"{self.a.console}/api/v1/attacks?{query}"
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + self.a.wait
        last = "no answer"
        while True:
            r = fetch(url, auth)
            if r.status != 200:
                last = f"GET /api/v1/attacks -> {r.status} {r.body[:120]!r}"
            else:
                items = r.json().get("items", [])
                if request_id:  # the very request we sent
                    hits = [i for i in items if i.get("request_id") == request_id]
                else:  # no id on the answer (e.g. it was not blocked): the newest record since we began
                    hits = [i for i in items if i.get("path") == "/etc/passwd" and i.get("time", 0) >= since - 1]
                if hits:
                    h = hits[0]
                    self.step("attack appears in the console", h.get("action") == "blocked",
                              f"id={h.get('id')} types={h.get('types')} action={h.get('action')} "
                              f"request_id={h.get('request_id')}")
                    return
                last = (f"{len(items)} records for /etc/passwd, none with request_id {request_id}" if request_id
                        else f"{len(items)} records for /etc/passwd, none newer than the walkthrough")
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        self.step("attack appears in the console", False, last)

    def plugins(self) -> None:
        r = fetch(self.a.admin + "/plugins")
        text = r.body.decode("utf-8", "replace")
        version = ""
        try:
            version = _find_version(json.loads(text))
        except ValueError:
            pass
        self.step("status listener reports wallarm-plugin", r.status == 200 and "wallarm-plugin" in text
                  and bool(version), f"/plugins -> {r.status}, version {version or 'missing'}")

    def run(self) -> int:
        since = time.time()
        self.benign()
        request_id = self.attack()
        self.console(since, request_id)
        self.plugins()
        if self.failures:
            print(f"smoke walkthrough FAILED: {', '.join(self.failures)}", flush=True)
            return 1
        print("smoke walkthrough passed", flush=True)
        return 0


def _find_version(doc: Any) -> str:
    """The plugin's version wherever the listener puts it (top level or per plugin entry)."""
    if isinstance(doc, dict):
        for k in ("version", "plugin_version", "connector_version"):
            if isinstance(doc.get(k), str) and doc[k]:
                return doc[k]
        for v in doc.values():
            if found := _find_version(v):
                return found
    elif isinstance(doc, list):
        for v in doc:
            if found := _find_version(v):
                return found
    return ""


def default_token(var_dir: Path) -> str:
    if os.environ.get("WALLARM_CONSOLE_TOKEN"):
        return os.environ["WALLARM_CONSOLE_TOKEN"]
    try:
        return (var_dir / "node.db.console-token").read_text("utf-8").strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the seed's walkthrough against a running system.")
    ap.add_argument("--proxy", default=os.environ.get("PROXY_URL", "http://127.0.0.1:8000"))
    ap.add_argument("--admin", default=os.environ.get("ADMIN_URL", "http://127.0.0.1:8001"))
    ap.add_argument("--console", default=os.environ.get("CONSOLE_URL", "http://127.0.0.1:8090"))
    ap.add_argument("--var-dir", type=Path, default=Path(os.environ.get("VAR_DIR", REPO / "var")))
    ap.add_argument("--token", default=None, help="console API token")
    ap.add_argument("--benign-path", default="/api/v1/users")
    ap.add_argument("--no-demo", dest="expect_demo", action="store_false",
                    help="the upstream is not the demo API: only expect a 200")
    ap.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the attack in the console")
    a = ap.parse_args(argv)
    a.token = a.token or default_token(a.var_dir)
    a.proxy, a.admin, a.console = (u.rstrip("/") for u in (a.proxy, a.admin, a.console))
    try:
        return Walkthrough(a).run()
    except (urllib.error.URLError, OSError) as e:
        print(f"smoke walkthrough FAILED: cannot reach the system: {e}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
