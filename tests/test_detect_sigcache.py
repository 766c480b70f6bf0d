"""The on-disk cache of compiled signature databases: used when valid, ignored and rewritten
when damaged, and never a reason for the engine not to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.detect import signatures as sigmod
from node.detect.signatures import SignatureSet, parse_signatures

SIGS = parse_signatures(
    [
        {"id": "t1", "type": "xss", "score": 10, "pattern": r"<script\b"},
        {"id": "t2", "type": "ptrav", "score": 10, "pattern": r"\.\./\.\./"},
    ],
    "test",
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(sigmod.CACHE_ENV, str(d))
    return d


def _files(d: Path) -> list[Path]:
    return sorted(d.glob("hs-*.db"))


def test_second_load_comes_from_cache_and_matches_the_same(cache: Path) -> None:
    cold = SignatureSet(SIGS)
    assert not cold.from_cache
    assert len(_files(cache)) == 1
    warm = SignatureSet(SIGS)
    assert warm.from_cache
    for data in (b"a <script>x", b"../../etc", b"harmless"):
        assert warm.scan(data) == cold.scan(data)
    assert warm.scan(b"<SCRIPT src=x>") == {0}


def test_changed_signatures_get_their_own_entry(cache: Path) -> None:
    SignatureSet(SIGS)
    other = parse_signatures([{"id": "t3", "type": "sqli", "score": 10, "pattern": r"union\s+select"}], "test")
    s = SignatureSet(other)
    assert not s.from_cache
    assert len(_files(cache)) == 2
    assert s.scan(b"1 UNION  select 2") == {0}


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_damaged_cache_is_ignored_and_rewritten(cache: Path, damage: str) -> None:
    SignatureSet(SIGS)
    (path,) = _files(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"x" * 4096)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    again = SignatureSet(SIGS)
    assert not again.from_cache
    assert again.scan(b"<script>") == {0}
    assert SignatureSet(SIGS).from_cache  # rewritten with a good copy


def test_unwritable_cache_dir_falls_back_to_compiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(sigmod.CACHE_ENV, str(blocker / "sub"))
    s = SignatureSet(SIGS)
    assert not s.from_cache
    assert s.scan(b"../../x") == {1}


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sigmod.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sigmod.cache_dir() == tmp_path / "wallarm-node"
