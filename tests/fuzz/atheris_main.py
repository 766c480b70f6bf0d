"""libFuzzer (through atheris) on one target of tests/fuzz/targets.py, coverage-guided over the
project's own code. Started by tests/fuzz/harness.py (`make fuzz`), which bounds its time and
reads its statistics; by hand:

    python -m tests.fuzz.atheris_main wire tests/fuzz/corpus/wire -max_total_time=60
"""

from __future__ import annotations

import sys

import atheris

# coverage counters for the code under test only (not the standard library, not hyperscan)
with atheris.instrument_imports(include=["wallarm_wire", "node"]):
    from tests.fuzz import targets


def main() -> None:
    name = sys.argv[1]
    target = targets.TARGETS[name]
    if name in ("engine", "endpoint"):
        targets.endpoint_instance()  # compile the signatures, open the store: before the first input is timed
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
