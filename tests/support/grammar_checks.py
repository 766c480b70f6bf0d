"""Shared assertions of the grammar-family tests (tests/test_detect_<class>.py): every
generated attack blocked in every placement it is rendered in, every look-alike passing."""

from __future__ import annotations

from node.detect.engine import Engine
from tests.support.grammar import benign, placed


def missed(engine: Engine, values: list[str], where: str, encoding: str = "plain") -> list[str]:
    """The values not blocked when placed `where` (under `encoding`)."""
    return [v for v in values if not engine.analyze_request(placed(v, where, encoding)).is_attack]


def assert_all_blocked(engine: Engine, values: list[str], where: str, encoding: str = "plain") -> None:
    assert values, "an empty family tests nothing"
    misses = missed(engine, values, where, encoding)
    assert not misses, f"{len(misses)} of {len(values)} missed in {where}/{encoding}: {misses[:10]}"


def assert_benign_pass(engine: Engine, cls: str, where: str) -> None:
    blocked = [(v, [a.rule_id for a in det.attacks]) for v in benign(cls)
               for det in [engine.analyze_request(placed(v, where))] if det.is_attack]
    assert not blocked, f"look-alikes blocked in {where}: {blocked}"
