"""Inputs the fuzzers found (and the bugs they showed, fixed): each file under
tests/fuzz_regressions/<target>/ is replayed through tests/fuzz/targets.py's <target>, the
same check that failed on it. `make fuzz` copies a new finding's input there by hand once the
bug is fixed (docs/reliability.md, "Fuzzing")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CASES = sorted(Path(__file__).parent.joinpath("fuzz_regressions").glob("*/*"))


def test_every_target_has_its_directory() -> None:
    assert {case.parent.name for case in CASES} <= set(TARGETS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_finding_stays_fixed(case: Path) -> None:
    TARGETS[case.parent.name](case.read_bytes())


def test_a_charset_label_with_a_non_utf8_byte_leaves_the_body_judged() -> None:
    """The engine finding, in its effect: `charset=utf\xad8` made the parser raise, and the
    engine judged the target only, so the XXE in the body scored 0."""
    from tests.fuzz.targets import engine_instance, message_of

    case = Path(__file__).parent / "fuzz_regressions" / "engine" / "charset-label-with-a-non-utf8-byte.bin"
    msg = message_of(case.read_bytes())
    assert b"charset=utf\xad8" in msg.headers[3][1]
    assert "xxe" in {a.type for a in engine_instance().analyze_request(msg).attacks}


async def test_a_record_holding_bytes_that_are_not_utf8_is_stored_with_its_batch(tmp_path: Path) -> None:
    """The endpoint finding, in its effect: a path or Host with a byte that is not UTF-8 reaches
    the record as a surrogate escape, SQLite refused to bind it, and the whole batch was lost
    (the other requests' attacks with it)."""
    from node.store.base import AttackFilter, Hit
    from tests.store_support import opened, record

    store = await opened(tmp_path / "a.db", flush_interval=1.0)  # both records in one batch
    try:
        store.add_attack(record(1))
        store.add_attack(record(2, path="/\udcf5?q=1", host="h\udcbd.example", request_excerpt="GET /\udcf5",
                                hits=[Hit(type="sqli", location="json.k\udcf5", rule_id="r", excerpt="x")]))
        await store.flush()
        stored = {r.request_id: r for r in (await store.list_attacks(AttackFilter(), limit=10)).items}
    finally:
        await store.close()
    assert set(stored) == {f"{1:032x}", f"{2:032x}"} and store.write_errors == 0
    kept = stored[f"{2:032x}"]
    assert (kept.path, kept.host, kept.hits[0].location) == ("/\\udcf5?q=1", "h\\udcbd.example", "json.k\udcf5")


SEED_FILES = sorted(Path(__file__).parent.joinpath("fuzz", "corpus").glob("*/seed-*"))


@pytest.mark.parametrize("seed", SEED_FILES, ids=[f"{s.parent.name}/{s.name}" for s in SEED_FILES])
def test_seed_inputs_pass_and_are_current(seed: Path) -> None:
    """The committed seeds are what tests/fuzz/seeds.py makes, and each passes its target."""
    from tests.fuzz.seeds import SEEDS

    assert seed.read_bytes() == SEEDS[seed.parent.name][seed.name.removeprefix("seed-")]
    TARGETS[seed.parent.name](seed.read_bytes())
