"""NoSQL injection (node/detect/nosqli.py): MongoDB operators in key positions of values and
parameter names, JavaScript in `$where` and break-outs of server-side expressions."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.nosqli import detect_nosqli
from tests.support.grammar import PLACES, nosqli_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("where", PLACES)
def test_operators_in_values_blocked(engine: Engine, where: str) -> None:
    assert_all_blocked(engine, nosqli_attacks()[0], where)


def test_operators_in_parameter_names_blocked(engine: Engine) -> None:
    assert_all_blocked(engine, nosqli_attacks()[1], "query-key")


@pytest.mark.parametrize("where", PLACES)
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "nosqli", where)


@pytest.mark.parametrize(("value", "kind", "rule"), [
    ("user[$ne]", "key", "operator-key"),
    ("user.$gt", "key", "operator-key"),
    ('{"$where": "sleep(100)"}', "json", "js-operator"),
    ("1'; return true; var x='", "query", "js-breakout"),
    ("' || 'a'=='a", "query", "js-breakout"),
    ("$ref", "key", None),
    ("$5 off", "query", None),
])
def test_rules(value: str, kind: str, rule: str | None) -> None:
    assert detect_nosqli(value, kind) == rule
