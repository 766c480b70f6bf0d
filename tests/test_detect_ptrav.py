"""Path traversal (node/detect/ptrav.py): grammar-generated climbs in every spelling of `../`,
dot segments and doubled slashes, sensitive files; look-alikes pass."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.ptrav import detect_ptrav, resolve
from tests.support.grammar import PLACES, ptrav_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("where", PLACES)
def test_traversals_blocked(engine: Engine, where: str) -> None:
    assert_all_blocked(engine, ptrav_attacks(), where)


@pytest.mark.parametrize("encoding", ["base64", "url-double"])
def test_traversals_blocked_encoded(engine: Engine, encoding: str) -> None:
    assert_all_blocked(engine, ptrav_attacks(), "query", encoding)


@pytest.mark.parametrize("where", PLACES)
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "ptrav", where)


@pytest.mark.parametrize(("token", "segments", "climbed"), [
    ("/etc/./passwd", ["etc", "passwd"], 0),
    ("....//....//etc/passwd", ["etc", "passwd"], 2),
    ("..;/..;/admin", ["admin"], 2),
    ("..%c0%af..%c0%afboot.ini", ["boot.ini"], 2),
    ("/var/www/../../etc/passwd", ["etc", "passwd"], 1),
    ("images/../logo.png", ["logo.png"], 0),
])
def test_resolve(token: str, segments: list[str], climbed: int) -> None:
    got, got_climbed, _popped = resolve(token)
    assert (got, got_climbed) == (segments, climbed)


def test_etc_dot_passwd_blocks(engine: Engine) -> None:
    assert detect_ptrav("/etc/./passwd") == "sensitive-file"
    assert engine.analyze_value("/etc/./passwd").is_attack
    assert detect_ptrav("../images/logo.png") is None
