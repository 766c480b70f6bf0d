"""The labelled cases in tests/cases/ against the real engine.

Every attack type: real payloads detected (in several places of a request, and encoded the
way GoTestWAF encodes them), benign look-alikes passing, whole requests judged with the right
location.
"""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from tests.support.cases import (
    ATTACKS,
    BENIGN,
    ENCODINGS,
    REQUESTS,
    attack_places,
    benign_places,
    carrier,
    encodable_attacks,
    entries,
    place,
    request_message,
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def attack_cases() -> list:
    params = []
    for typ, section in ATTACKS.items():
        for value, where in entries(section):
            for p in attack_places(typ, where):
                params.append(pytest.param(typ, value, p, id=f"{typ}-{p}-{value[:40]}"))
    return params


def benign_cases() -> list:
    params = []
    for group, section in BENIGN.items():
        for value in section:
            for p in benign_places(group):
                params.append(pytest.param(value, p, id=f"{group}-{p}-{value[:40]}"))
    return params


@pytest.mark.parametrize(("typ", "value", "where"), attack_cases())
def test_attack_detected(engine: Engine, typ: str, value: str, where: str) -> None:
    det = engine.analyze_request(place(value, where))
    assert det.is_attack, f"missed {typ} in {where}: {value!r} (score {det.score})"
    types = {a.type for a in det.attacks}
    assert typ in types, f"{value!r} in {where}: reported {types}, expected {typ}"


@pytest.mark.parametrize(("value", "where"), benign_cases())
def test_benign_passes(engine: Engine, value: str, where: str) -> None:
    det = engine.analyze_request(place(value, where))
    assert not det.is_attack, f"blocked benign {value!r} in {where}: {det.attacks}"


# ---------------------------------------------------------------------------- encodings
# GoTestWAF's encoders applied to our own attack cases; the engine must see through them.


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_encoded_attacks_detected(engine: Engine, name: str) -> None:
    encode = ENCODINGS[name]
    total, missed = 0, []
    for typ, value in encodable_attacks(name):
        total += 1
        det = engine.analyze_request(carrier(encode(value), name))
        if not det.is_attack:
            missed.append(f"{typ}: {value!r}")
    rate = 1 - len(missed) / total
    assert rate >= 0.97, f"{name}: {rate:.1%} detected; missed {len(missed)}: {missed[:15]}"


# ---------------------------------------------------------------------------- whole requests


def request_cases() -> list:
    return [pytest.param(c, id=c["name"]) for c in REQUESTS]


@pytest.mark.parametrize("case", request_cases())
def test_request_case(engine: Engine, case: dict) -> None:
    det = engine.analyze_request(request_message(case))
    if case["expect"] == "benign":
        assert not det.is_attack, f"{case['name']}: blocked {det.attacks}"
        return
    assert det.is_attack, f"{case['name']}: missed (score {det.score})"
    found = [a for a in det.attacks if a.type == case["expect"]]
    assert found, f"{case['name']}: reported {[a.type for a in det.attacks]}, expected {case['expect']}"
    if "location" in case:
        assert case["location"] in {a.location for a in found}, f"{case['name']}: locations {[a.location for a in found]}"
