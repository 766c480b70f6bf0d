"""LDAP injection (node/detect/ldapi.py): values that, placed in a filter, close their item and
go on with filter syntax, generated from the filter grammar; prose with parentheses passes."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.ldapi import detect_ldapi
from tests.support.grammar import PLACES, ldapi_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("where", PLACES)
def test_filter_injections_blocked(engine: Engine, where: str) -> None:
    assert_all_blocked(engine, ldapi_attacks(), where)


@pytest.mark.parametrize("encoding", ["base64", "url-double"])
def test_filter_injections_blocked_encoded(engine: Engine, encoding: str) -> None:
    assert_all_blocked(engine, ldapi_attacks(), "query", encoding)


@pytest.mark.parametrize("where", PLACES)
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "ldapi", where)


@pytest.mark.parametrize(("value", "rule"), [
    ("*)(uid=*))(|(uid=*", "filter-breakout"),
    ("admin)(&)", "filter-breakout"),
    ("x)(!(cn=x))", "filter-breakout"),
    ("(&(uid=*)(userPassword=*))", "filter-breakout"),
    ("(&(uid=*))", "filter"),
    ("(a)(b)(c)", None),
    ("f(x) = x * (x + 1)", None),
    ("great :))", None),
])
def test_rules(value: str, rule: str | None) -> None:
    assert detect_ldapi(value) == rule
