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
