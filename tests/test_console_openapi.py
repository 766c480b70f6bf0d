"""The console's `openapi.json` against the console itself.

The document is written by hand, so it can drift from the handlers. Three checks keep it true:
it is a valid OpenAPI 3 document (openapi-spec-validator); every query parameter it lists is one
the handler accepts (and nothing else is); and a property-based run (schemathesis, fixed seed,
bounded) against a real running node finds no 5xx and no answer outside the document, for
every operation with the bearer token and, for the state-changing ones, again with a browser
session, its CSRF token and its Origin (what the console's own pages send).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from node.console.api import OPENAPI_PATH
from node.console.auth import SESSION_COOKIE
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


MUTATING_OPERATIONS = [label for label in OPERATIONS if label.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.fixture(scope="module")
def browser_session(node: NodeHandle) -> tuple[str, dict[str, str]]:
    """What the console's own pages send: the session cookie's value; the CSRF token and Origin."""
    with httpx.Client(base_url=node.console_url, trust_env=False, timeout=10) as http:
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', http.get("/login").text).group(1)
        r = http.post("/login", data={"token": node.token, "login_nonce": nonce},
                      headers={"Origin": node.console_url})
        assert r.status_code == 303, r.text
        session_id = r.cookies[SESSION_COOKIE]
        page = http.get("/settings").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    return session_id, {"X-CSRF-Token": csrf, "Origin": node.console_url}


def test_every_state_change_is_in_the_session_run() -> None:
    assert {label.split(" ", 1)[0] for label in MUTATING_OPERATIONS} == {"PUT", "POST", "DELETE"}


@pytest.mark.parametrize("label", MUTATING_OPERATIONS)
def test_state_changes_with_a_browser_session_answer_as_documented(node: NodeHandle,
                                                                   browser_session: tuple[str, dict[str, str]],
                                                                   label: str) -> None:
    session_id, headers = browser_session
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def answers_as_documented(case: schemathesis.Case) -> None:
        # schemathesis fills the document's security schemes with made-up values: a made-up bearer
        # would win over the session (and count as a wrong token); the cookie is ours.
        if case.headers:
            case.headers.pop("Authorization", None)
        case.cookies = {SESSION_COOKIE: session_id}
        response = case.call_and_validate(base_url=node.console_url, headers=headers, checks=CHECKS)
        statuses.append(response.status_code)

    answers_as_documented()
    # The session, CSRF token and Origin were accepted: no answer was an auth or CSRF refusal.
    assert statuses and not {401, 403, 429} & set(statuses), sorted(set(statuses))



@pytest.fixture(scope="module")
def guessed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHandle]:
    """A node of its own: the run below locks 127.0.0.1 out, which would fail the other runs."""
    handle = start_node(tmp_path_factory.mktemp("openapi-guessed"), mode="block")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.mark.parametrize("label", OPERATIONS)
def test_made_up_credentials_are_refused_and_never_crash(guessed_node: NodeHandle, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES // 2, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def refused(case: schemathesis.Case) -> None:
        # The bearer tokens and session cookies are schemathesis's inventions: none may get in.
        response = case.call_and_validate(base_url=guessed_node.console_url, checks=CHECKS)
        statuses.append(response.status_code)

    refused()
    assert statuses and set(statuses) <= {401, 429}, sorted(set(statuses))
