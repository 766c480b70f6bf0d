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


def test_a_regex_alternation_of_a_tab_in_json_is_no_absolute_filter(engine: Engine) -> None:
    """`( |\\t)` of an e-mail validator's regex, in a page config's JSON: once the JSON string's
    `\\t` is decoded it read as the absolute filter `(|)` to the plain signature (a benign 857 KB
    beacon of the corpus was blocked for it). The absolute filters are still found with a space
    inside, and by the analyser whatever surrounds them."""
    config = '{"rules": [{"rex": "^((\\")(((( |\\t)*(\\r\\n))?( |\\t)+)?(\\"))@x$", "msg": "required"}]}'
    assert not engine.analyze_value(config, "json.config", "json").is_attack
    for value in ("admin)(&)", "x)( | )", "(|)", "*)(&)(x=y"):
        assert engine.analyze_value(value, "query.user", "query").is_attack, value
