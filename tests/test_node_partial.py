"""Partial inspection through a real node (issue 13, item 3): the verdict carries the reasons,
`partial_inspection` (and its per host/path overrides) decides block or monitor, the body limit
is a setting, the metric counts, the record is stored under type `partial_inspection`, and the
console filters on it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from wallarm_wire import protocol as p
from node.detect.request import MAX_JSON_DEPTH
from tests.support.node import NodeClient, NodeHandle, start_node, stored_attacks

pytestmark = pytest.mark.e2e

MAX_BODY = 256 * 1024


def deep_json(payload: str = "hello") -> bytes:
    doc: object = {"q": payload}
    for _ in range(MAX_JSON_DEPTH + 3):
        doc = {"a": doc}
    return json.dumps(doc).encode()


JSON = [("Content-Type", "application/json")]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("partial-node"), mode="block", extra={
        "max_body_bytes": MAX_BODY,
        "overrides": [
            {"mode": "block", "host": "lenient.test", "partial_inspection": "monitor"},
            {"mode": "block", "path_prefix": "/upload", "max_body_bytes": 64 * 1024},
            {"mode": "monitoring", "host": "watch.test"},
        ],
    })
    try:
        yield handle
    finally:
        handle.stop()


def console_get(node: NodeHandle, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(node.console_url + path, headers={"Authorization": f"Bearer {node.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def record_of(node: NodeHandle, rid: str, timeout: float = 5.0):  # noqa: ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in await stored_attacks(node.db_path) if r.request_id == rid]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no record of {rid}")


def test_partial_inspection_blocks_in_block_mode_and_is_stored(node: NodeHandle) -> None:
    rid = p.new_request_id()
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/api/doc", headers=JSON, body=deep_json(), request_id=rid)
    assert status == 403
    assert verdict["action"] == "block" and verdict["reason"] == "partial" and verdict["partial"] == ["depth"]
    assert verdict["attacks"] == []
    record = asyncio.run(record_of(node, rid))
    assert record.action == "blocked" and record.reason == "partial"
    assert [(h.type, h.rule_id) for h in record.hits] == [("partial_inspection", "partial.depth")]


def test_an_attack_found_in_a_partial_inspection_is_an_attack(node: NodeHandle) -> None:
    body = json.dumps({"q": "1' or '1'='1", "deep": json.loads(deep_json())}).encode()
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/api/doc", headers=JSON, body=body)
    assert status == 403 and verdict["reason"] == "attack" and verdict["partial"] == ["depth"]


def test_monitor_override_records_without_blocking(node: NodeHandle) -> None:
    rid = p.new_request_id()
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/api/doc", headers=JSON, body=deep_json(), host="lenient.test", request_id=rid)
        assert status == 200 and verdict["action"] == "pass" and verdict["partial"] == ["depth"]
        # an attack there is still blocked: the override is about partial inspections only
        status, _ = c.request("GET", "/etc/passwd", host="lenient.test")
        assert status == 403
    record = asyncio.run(record_of(node, rid))
    assert record.action == "monitored" and record.reason == "partial"


def test_monitoring_mode_only_records(node: NodeHandle) -> None:
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/api/doc", headers=JSON, body=deep_json(), host="watch.test")
    assert status == 200 and verdict["partial"] == ["depth"] and verdict["reason"] == "partial"


def test_body_limit_is_the_setting_and_a_path_override(node: NodeHandle) -> None:
    within = b"note=" + b"lorem ipsum " * (200 * 1024 // 12)  # ~200 KiB: under max_body_bytes
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/api/notes", headers=[("Content-Type", "application/x-www-form-urlencoded")],
                                    body=within)
        assert status == 200 and verdict["partial"] == []
        # /upload has a 64 KiB override: the same body is only partly inspected there
        status, verdict = c.request("POST", "/upload/a", headers=[("Content-Type", "application/x-www-form-urlencoded")],
                                    body=within)
        assert status == 403 and verdict["partial"] == ["body"]


def test_a_body_the_connector_cut_is_partial(node: NodeHandle) -> None:
    rid = p.new_request_id()
    data = p.encode_request(p.RequestMessage("POST", "/api/notes", [(b"Host", b"api.test")], b"a=1"))
    headers = {p.H_REQUEST_ID: rid, "Content-Type": p.CONTENT_TYPE_REQUEST, p.H_BODY_TRUNCATED: "5000000"}
    with NodeClient(node) as c:
        r = c.raw(data, headers)
    assert r.status_code == 403 and r.json()["partial"] == ["body"]


def test_metric_and_console_filter(node: NodeHandle) -> None:
    with NodeClient(node) as c:
        status, _ = c.request("POST", "/api/doc", headers=JSON, body=deep_json())
        assert status == 403
        status, _ = c.request("GET", "/etc/passwd")
        assert status == 403
    with urllib.request.urlopen(node.console_url + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    line = next(x for x in metrics.splitlines() if x.startswith('wallarm_node_partial_inspections_total{reason="depth"}'))
    assert float(line.split()[-1]) >= 1
    deadline = time.monotonic() + 5
    while True:
        status, page = console_get(node, "/api/v1/attacks?partial=1&limit=200")
        assert status == 200
        if page["items"] and len(page["items"]) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert page["items"] and all("partial_inspection" in a["types"] for a in page["items"])
    status, page = console_get(node, "/api/v1/attacks?limit=200")
    assert any("partial_inspection" not in a["types"] for a in page["items"])
    assert console_get(node, "/api/v1/attacks?partial=maybe")[0] == 400


def test_console_mode_settings_carry_partial_inspection(node: NodeHandle) -> None:
    status, mode = console_get(node, "/api/v1/mode")
    assert status == 200 and mode["partial_inspection"] == "block"
    lenient = next(o for o in mode["overrides"] if o["host"] == "lenient.test")
    assert lenient["partial_inspection"] == "monitor" and lenient["max_body_bytes"] is None
    upload = next(o for o in mode["overrides"] if o["path_prefix"] == "/upload")
    assert upload["max_body_bytes"] == 64 * 1024 and upload["partial_inspection"] is None
