"""Pairing, masking and malformed input, against a real node process."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest

from wallarm_wire import protocol as p
from tests.support.node import NodeClient, start_node
from tests.test_node_endpoint import BENIGN, by_id, wait_for

pytestmark = pytest.mark.e2e

DENIED_IP = "203.0.113.50"  # denylisted: recorded without depending on what the engine finds


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = start_node(tmp_path_factory.mktemp("messages"), mode="block",
                   extra={"ip_lists": {"deny": ["203.0.113.0/24"]}})  # default 8 MiB body cap
    yield n
    n.stop()


def metric(node, line_prefix: str) -> float:
    with urllib.request.urlopen(node.console_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# ------------------------------------------------------------------------- pairing


async def test_response_after_request_sets_the_stored_status(node):
    rid = p.new_request_id()
    with NodeClient(node) as c:
        assert c.request("GET", BENIGN, ip=DENIED_IP, request_id=rid, delivery="async")[0] == 200
        status, verdict = c.response(rid, 502)
    assert status == 200 and verdict["reason"] == "response"
    records = await wait_for(node.db_path, lambda rs: any(r.response_status == 502 for r in by_id(rs, rid)))
    assert len(by_id(records, rid)) == 1


async def test_response_before_request_is_joined(node):
    rid = p.new_request_id()
    with NodeClient(node) as c:
        assert c.response(rid, 404)[0] == 200
        assert c.request("GET", BENIGN, ip=DENIED_IP, request_id=rid, delivery="async")[0] == 200
    records = await wait_for(node.db_path, lambda rs: by_id(rs, rid))
    assert [r.response_status for r in by_id(records, rid)] == [404]


async def test_pairing_is_counted(node):
    before = metric(node, "wallarm_node_pairing_joined_total")
    rid = p.new_request_id()
    with NodeClient(node) as c:
        c.request("GET", BENIGN, request_id=rid)
        c.response(rid, 200)
    assert metric(node, "wallarm_node_pairing_joined_total") == before + 1


async def test_unpaired_messages_expire_and_are_counted(tmp_path):
    n = start_node(tmp_path, extra={"pairing": {"ttl_seconds": 2, "max_entries": 3}})
    try:
        with NodeClient(n) as c:
            for _ in range(5):  # 5 requests into a table of 3: two capacity evictions
                c.request("GET", BENIGN)
            late = p.new_request_id()
            c.request("GET", BENIGN, request_id=late)
            time.sleep(2.3)
            c.response(p.new_request_id(), 200)  # the insert sweeps everything older than the TTL
        assert metric(n, 'wallarm_node_pairing_evictions_total{reason="capacity",side="request"}') == 3
        assert metric(n, 'wallarm_node_pairing_evictions_total{reason="expired",side="request"}') == 3
        assert metric(n, "wallarm_node_pairing_pending") == 1
    finally:
        n.stop()


async def test_response_findings_are_recorded_with_their_request(node):
    leak = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
    first, second = p.new_request_id(), p.new_request_id()
    with NodeClient(node) as c:
        assert c.request("GET", "/download?file=report.txt", request_id=first, delivery="async")[0] == 200
        status, verdict = c.response(first, 200, headers=[("Content-Type", "text/plain")], body=leak)
        assert status == 200 and verdict["attacks"] and verdict["action"] == "pass"
        c.response(second, 200, headers=[("Content-Type", "text/plain")], body=leak)  # response first
        c.request("GET", "/download?file=other.txt", request_id=second, delivery="async")
    records = await wait_for(node.db_path, lambda rs: by_id(rs, first) and by_id(rs, second))
    for rid, path in ((first, "/download"), (second, "/download")):
        rec = by_id(records, rid)[0]
        assert rec.path == path and rec.response_status == 200 and rec.action == "monitored"
        assert [h.location for h in rec.hits] == ["response.body"]


# ------------------------------------------------------------------------- masking


async def test_secrets_are_masked_before_storage(node):
    secrets_in = ["Bearer-token-abc123", "sess-cookie-42", "hunter2-pass", "key-0xDEADBEEF", "qs-secret-9"]
    with NodeClient(node) as c:
        status, verdict = c.request(
            "POST", "/login?next=/home&access_token=qs-secret-9", ip=DENIED_IP,
            headers=[("Authorization", "Bearer Bearer-token-abc123"), ("Cookie", "sid=sess-cookie-42; theme=dark"),
                     ("X-Api-Key", "key-0xDEADBEEF"), ("Content-Type", "application/json")],
            body=json.dumps({"user": "bob", "password": "hunter2-pass"}).encode())
    assert status == 403
    records = await wait_for(node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    excerpt = by_id(records, verdict["request_id"])[0].request_excerpt
    for secret in secrets_in:
        assert secret not in excerpt
    assert "Authorization: Bearer ***" in excerpt and "sid=***" in excerpt and "X-Api-Key: ***" in excerpt
    assert '"password": "***"' in excerpt and '"user": "bob"' in excerpt and "next=/home" in excerpt


async def test_attack_excerpt_in_a_secret_field_is_masked(node):
    with NodeClient(node) as c:
        status, verdict = c.request("POST", "/login", headers=[("Content-Type", "application/x-www-form-urlencoded")],
                                    body=b"user=bob&password=%27%20OR%201%3D1--")
    assert status == 403 and verdict["attacks"]
    assert all(a["excerpt"] == "***" for a in verdict["attacks"] if "password" in a["location"])
    records = await wait_for(node.db_path, lambda rs: by_id(rs, verdict["request_id"]))
    rec = by_id(records, verdict["request_id"])[0]
    assert "OR 1=1" not in rec.request_excerpt and "password=***" in rec.request_excerpt
    assert all("OR 1" not in h.excerpt for h in rec.hits)


# ------------------------------------------------------------------------- malformed input


def _valid_headers(**extra: str) -> dict[str, str]:
    return {p.H_REQUEST_ID: p.new_request_id(), "Content-Type": p.CONTENT_TYPE_REQUEST,
            p.H_FORWARDED_FOR: DENIED_IP, **extra}


MALFORMED = {
    "truncated head": (b"GET /etc/passwd HTTP/1.1\r\nHost: a\r\nX-Cut", {}, 400, "truncated"),
    "truncated body": (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nshort", {}, 400, "truncated"),
    "binary garbage": (os.urandom(2048) + b"\r\n\r\n", {}, 400, "malformed"),
    "bad header line": (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", {}, 400, "malformed header"),
    "wrong content type": (b"GET / HTTP/1.1\r\n\r\n", {"Content-Type": "application/json"}, 415, "Content-Type"),
    "missing content type": (b"GET / HTTP/1.1\r\n\r\n", {"Content-Type": ""}, 415, "Content-Type"),
    "unknown msgtype": (b"GET / HTTP/1.1\r\n\r\n", {"Content-Type": "message/http; msgtype=foo"}, 415, "msgtype"),
    "missing request id": (b"GET / HTTP/1.1\r\n\r\n", {p.H_REQUEST_ID: ""}, 400, p.H_REQUEST_ID),
    "invalid request id": (b"GET / HTTP/1.1\r\n\r\n", {p.H_REQUEST_ID: "../../etc"}, 400, p.H_REQUEST_ID),
    "bad forwarded-for": (b"GET / HTTP/1.1\r\n\r\n", {p.H_FORWARDED_FOR: "not-an-ip"}, 400, p.H_FORWARDED_FOR),
    "bad mode": (b"GET / HTTP/1.1\r\n\r\n", {p.H_DELIVERY: "sometimes"}, 400, p.H_DELIVERY),
    "bad status line": (b"HTTP/1.1 abc\r\n\r\n", {"Content-Type": p.CONTENT_TYPE_RESPONSE}, 400, "status line"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_messages_get_4xx_with_reason_and_nothing_recorded(node, case):
    body, extra, want_status, want_reason = MALFORMED[case]
    headers = _valid_headers(**extra)
    if not headers.get(p.H_REQUEST_ID):
        del headers[p.H_REQUEST_ID]
    if not headers.get("Content-Type"):
        del headers["Content-Type"]
    with NodeClient(node) as c:
        r = c.raw(body, headers)
        assert r.status_code == want_status, r.text
        assert want_reason.lower() in r.json()["error"].lower()
        # still serving, and the refused message left no record (its sender is denylisted)
        status, marker = c.request("GET", BENIGN, ip=DENIED_IP)
    assert status == 403
    records = await wait_for(node.db_path, lambda rs: by_id(rs, marker["request_id"]))
    if headers.get(p.H_REQUEST_ID):
        assert by_id(records, headers[p.H_REQUEST_ID]) == []


async def test_ten_megabyte_body_is_refused_with_413(node):
    big = b"POST /upload HTTP/1.1\r\nHost: a\r\n\r\n" + b"A" * (10 * 1024 * 1024)
    with NodeClient(node) as c:
        r = c.raw(big, _valid_headers())
        assert r.status_code == 413 and "exceeds" in r.json()["error"]
        chunked = c.http.post(c.url, content=iter([big[:1 << 20]] * 10), headers=_valid_headers())  # no Content-Length
        assert chunked.status_code == 413
        assert c.request("GET", BENIGN)[0] == 200


async def test_get_is_refused_with_405(node):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.endpoint_url + "anything", timeout=5)  # noqa: S310 - loopback
    assert err.value.code == 405 and "POST" in json.loads(err.value.read())["error"]


async def test_live_is_answered_on_the_endpoint_without_counting_a_refusal(node):
    """The connector's breaker checks `<node path>/live` on the endpoint before opening."""
    before = metric(node, 'wallarm_node_parse_errors_total{kind="method"}')
    with urllib.request.urlopen(node.endpoint_url + "live", timeout=5) as r:  # noqa: S310 - loopback
        assert r.status == 200 and json.loads(r.read()) == {"status": "live"}
    assert metric(node, 'wallarm_node_parse_errors_total{kind="method"}') == before
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.endpoint_url + "live-not", timeout=5)  # noqa: S310 - loopback
    assert err.value.code == 405


async def test_parse_errors_are_counted(node):
    before = metric(node, 'wallarm_node_parse_errors_total{kind="protocol"}')
    with NodeClient(node) as c:
        c.raw(b"\x00\x01\x02\r\n\r\n", _valid_headers())
    assert metric(node, 'wallarm_node_parse_errors_total{kind="protocol"}') == before + 1


async def test_protocol_post_on_any_path(node):
    with NodeClient(node.endpoint_url + "wallarm/v1/check") as c:
        status, _ = c.request("GET", BENIGN, ip=DENIED_IP)
    assert status == 403
