"""The console's `openapi.json` against the console itself.

The document is written by hand, so it can drift from the handlers. Three checks keep it true:
it is a valid OpenAPI 3 document (openapi-spec-validator); every query parameter it lists is one
the handler accepts (and nothing else is); and a property-based run (schemathesis, fixed seed,
bounded) against a real running node finds no 5xx and no answer outside the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from node.console.api import OPENAPI_PATH
from tests.support.node import NodeClient, NodeHandle, start_node

pytestmark = pytest.mark.e2e

DOC = json.loads(OPENAPI_PATH.read_text("utf-8"))
# A valid value for each documented query parameter: a parameter the handler does not know
# is answered 400 "unknown parameter(s)", whatever its value.
SAMPLE_VALUES = {
    "type": "sqli", "ip": "203.0.113.0/24", "action": "blocked", "host": "api.test",
    "since": "1764136800", "until": "2026-11-26T12:00:00", "q": "/etc", "cursor": "", "limit": "5",
    "buckets": "10", "list": "deny", "include_expired": "1", "partial": "1",
}
MAX_EXAMPLES = 50  # per operation: the 9 operations take ~10 s on the 2-core CI machine


def test_document_is_valid_openapi() -> None:
    validate(DOC)  # raises OpenAPIValidationError naming the first problem


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    handle = start_node(tmp_path_factory.mktemp("openapi-node"), mode="block",
                        extra={"ip_lists": {"deny": ["192.0.2.66"]}})
    try:
        # Real records of both reasons, so that list, detail and stats answers have items to check.
        with NodeClient(handle) as c:
            for target in ("/etc/passwd", "/search?q=1'+or+'1'='1", "/?x=<script>alert(1)</script>"):
                status, _ = c.request("GET", target, ip="198.51.100.7")
                assert status == 403
            status, verdict = c.request("GET", "/api/v1/users", ip="192.0.2.66")
            assert status == 403 and verdict["reason"] == "denylist"
        yield handle
    finally:
        handle.stop()


def _auth(node: NodeHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


def _query_operations() -> list[tuple[str, str, list[str]]]:
    out = []
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            if names:
                out.append((method.upper(), path, names))
    return out


@pytest.mark.parametrize("method,path,names", _query_operations(), ids=lambda v: str(v).replace("/", "_"))
def test_documented_query_parameters_are_the_accepted_ones(node: NodeHandle, method: str, path: str,
                                                           names: list[str]) -> None:
    with httpx.Client(base_url=node.console_url, headers=_auth(node), trust_env=False, timeout=10) as http:
        for name in names:
            r = http.request(method, path, params={name: SAMPLE_VALUES[name]})
            assert r.status_code == 200, (name, r.text)
        r = http.request(method, path, params={"undocumented": "1"})
        assert r.status_code == 400 and "unknown parameter" in r.json()["error"]


# Loaded from the file at import so each operation is its own test; the running node serves the
# same bytes (checked below). schemathesis's pytest plugin (`from_fixture`) is not used: it reaches
# into pytest internals that pytest 9 no longer has, so the cases are drawn with hypothesis here.
SCHEMA = schemathesis.openapi.from_dict(DOC)
OPERATIONS = sorted(op.ok().label for op in SCHEMA.get_all_operations())
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_the_node_serves_this_document(node: NodeHandle) -> None:
    r = httpx.get(node.console_url + "/api/v1/openapi.json", headers=_auth(node), trust_env=False)
    assert r.status_code == 200 and r.json() == DOC


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_answers_as_documented(node: NodeHandle, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=node.console_url, headers=_auth(node), checks=CHECKS)

    answers_as_documented()
