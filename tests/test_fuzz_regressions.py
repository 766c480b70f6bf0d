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


SEED_FILES = sorted(Path(__file__).parent.joinpath("fuzz", "corpus").glob("*/seed-*"))


@pytest.mark.parametrize("seed", SEED_FILES, ids=[f"{s.parent.name}/{s.name}" for s in SEED_FILES])
def test_seed_inputs_pass_and_are_current(seed: Path) -> None:
    """The committed seeds are what tests/fuzz/seeds.py makes, and each passes its target."""
    from tests.fuzz.seeds import SEEDS

    assert seed.read_bytes() == SEEDS[seed.parent.name][seed.name.removeprefix("seed-")]
    TARGETS[seed.parent.name](seed.read_bytes())
