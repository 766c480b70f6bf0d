"""Operations: settings from WALLARM_NODE_* variables, `check-config`, JSON logs, the SIEM stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from node.events import EventsConfig, EventStream, event_line
from node.check_config import unknown_variables
from node.settings import SettingsError, load_settings
from node.store.base import AttackRecord, Hit
from tests.support.node import NodeClient, start_node
from tests.support.procs import REPO, child_env
from tests.support.metrics import samples


# ------------------------------------------------------------------ environment variables

def test_variables_sit_between_the_file_and_the_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("mode: block\nretention:\n  max_count: 500\n  max_age_days: 30\nlog_level: WARNING\n")
    monkeypatch.setenv("WALLARM_NODE_MODE", "monitoring")
    monkeypatch.setenv("WALLARM_NODE_RETENTION__MAX_AGE_DAYS", "7")  # one nested key: the file keeps the rest
    monkeypatch.setenv("WALLARM_NODE_IP_LISTS", '{"deny": ["203.0.113.7", {"network": "198.51.100.0/24", "comment": "x"}]}')
    monkeypatch.setenv("wallarm_node_log_level", "DEBUG")  # names are case-insensitive
    s = load_settings(cfg)
    assert (s.mode, s.retention.max_age_days, s.retention.max_count, s.log_level) == ("monitoring", 7, 500, "DEBUG")
    assert [i.network for i in s.ip_lists.deny] == ["203.0.113.7/32", "198.51.100.0/24"]
    assert load_settings(cfg, {"mode": "safe_blocking"}).mode == "safe_blocking"  # a flag wins
    assert load_settings(cfg, use_environment=False).mode == "block"


def test_a_relative_path_in_a_variable_resolves_against_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WALLARM_NODE_DB", "data/n.db")
    assert load_settings(None).db_file == tmp_path / "data" / "n.db"


@pytest.mark.parametrize("name, value, says", [
    ("WALLARM_NODE_IP_LISTS", "{not json", "environment"),
    ("WALLARM_NODE_MODE", "blokc", "mode"),
    ("WALLARM_NODE_MAX_BODY_BYTES", "-1", "max_body_bytes"),
])
def test_a_bad_variable_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings(None)
    assert "environment" in str(err.value) and says in str(err.value)


def test_misspelt_variables_are_found() -> None:
    env = {"WALLARM_NODE_MODEE": "x", "WALLARM_NODE_MODE": "off", "WALLARM_NODE_RETENTION__MAX_COUNT": "1",
           "WALLARM_NODE_CACHE_DIR": "/tmp", "HOME": "/root", "WALLARM_NODE_RETENTON__MAX_COUNT": "1"}
    assert unknown_variables(env) == ["WALLARM_NODE_MODEE", "WALLARM_NODE_RETENTON__MAX_COUNT"]


# ------------------------------------------------------------------ check-config

def _check(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "check-config", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**child_env(), **env})


def test_check_config_passes_a_good_config_and_names_each_problem(tmp_path: Path) -> None:
    good = tmp_path / "node.yaml"
    good.write_text(f"db: {tmp_path / 'n.db'}\nmode: monitoring\n")
    r = _check(["--config", str(good)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok    signatures:" in r.stdout and "ok    store:" in r.stdout and "config is valid" in r.stdout

    r = _check(["--config", str(good)], WALLARM_NODE_MODEE="off")  # a typo the node would ignore
    assert r.returncode == 2 and "FAIL  environment: unknown variable(s) WALLARM_NODE_MODEE" in r.stdout

    r = _check(["--config", str(good), "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k.pem")])
    assert r.returncode == 2 and "FAIL  tls: cannot load TLS certificate" in r.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: sometimes\n")
    r = _check(["--config", str(bad)])
    assert r.returncode == 2 and "mode" in r.stderr and "config has errors" in r.stderr


# ------------------------------------------------------------------ JSON logs and the event stream

class Collector:
    """A real HTTP server standing in for a SIEM's collector: refuses the first `failures` POSTs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.posts: list[tuple[str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((request.headers.get("Content-Type", ""), body))
        if len(self.posts) <= self.failures:
            return web.Response(status=503)
        return web.Response(status=204)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for ctype, body in self.posts[self.failures:] for line in body.decode().splitlines()]


def _serve(collector: Collector) -> tuple[asyncio.AbstractEventLoop, web.AppRunner, int]:
    import threading

    from tests.support.procs import free_port

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/ingest", collector.handle)
    runner = web.AppRunner(app)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop, runner, port


def test_a_real_node_streams_attacks_as_ndjson_to_a_file_and_a_webhook_that_fails_at_first(tmp_path: Path) -> None:
    collector = Collector(failures=2)
    loop, runner, port = _serve(collector)
    events_file = tmp_path / "events.ndjson"
    node = start_node(tmp_path, mode="block", extra={"log_format": "json", "events": {
        "file": str(events_file), "webhook_url": f"http://127.0.0.1:{port}/ingest", "webhook_retries": 4,
        "webhook_headers": {"Authorization": "Bearer siem-token"}}})
    try:
        with NodeClient(node) as client:
            assert client.request("GET", "/etc/passwd", ip="192.0.2.44")[1]["action"] == "block"
            assert client.request("GET", "/products?q=lamp")[1]["action"] == "pass"
        deadline = time.monotonic() + 15  # two refusals: retried after 0.5 s and 1 s
        while not collector.events() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = httpx.get(node.console_url + "/metrics", trust_env=False).text
    finally:
        node.stop()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
    lines = events_file.read_text().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (event["path"], event["client_ip"], event["action"], event["types"]) == ("/etc/passwd", "192.0.2.44", "blocked", ["ptrav"])
    assert collector.events() == [event]  # the same line, delivered on the third POST
    assert len(collector.posts) == 3 and collector.posts[-1][0] == "application/x-ndjson"
    got = samples(text)
    assert got['wallarm_node_events_total{sink="file",result="sent"}'] == 1
    assert got['wallarm_node_events_total{sink="webhook",result="sent"}'] == 1
    for line in node.output().splitlines():  # --log-format json: every log line is one object
        if line.strip():
            assert {"ts", "level", "logger", "msg"} <= json.loads(line).keys()


def _record(path: str) -> AttackRecord:
    return AttackRecord(time=1_700_000_000.0, request_id="r" * 32, client_ip="192.0.2.1", host="api.test",
                        method="GET", path=path, hits=[Hit("sqli", "query.id", "sqli.x", "1' or '1'='1", 10)],
                        action="blocked", mode="block")


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    counted: list[tuple[str, str]] = []

    async def run() -> None:
        stream = EventStream(EventsConfig(webhook_url="http://127.0.0.1:9/x", queue_max=2), "n1",
                             lambda sink, result: counted.append((sink, result)))
        for i in range(5):  # not started: nothing drains, as when the SIEM hangs
            stream.publish(_record(f"/p{i}"))
        assert stream.sinks[0].queue.qsize() == 2

    asyncio.run(run())
    assert counted == [("webhook", "dropped")] * 3


def test_the_event_line_is_one_line_of_json_with_the_masked_excerpt() -> None:
    line = event_line(_record("/a\nb"), "node-7")
    assert "\n" not in line
    event = json.loads(line)
    assert event["node"] == "node-7" and event["time"] == "2023-11-14T22:13:20.000Z" and event["score"] == 10
    assert event["attacks"] == [{"type": "sqli", "location": "query.id", "rule": "sqli.x", "excerpt": "1' or '1'='1"}]
