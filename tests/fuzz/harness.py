"""`make fuzz`: each target of tests/fuzz/targets.py for a bounded time, one line of numbers each.

    python -m tests.fuzz.harness wire http1 engine endpoint --seconds 60

With atheris installed (the `fuzz` extra) libFuzzer runs each target in a child process
(tests/fuzz/atheris_main.py): it grows tests/fuzz/corpus/<target>/ (the committed seed-* files
are its start) and writes any crashing input to tests/fuzz/findings/. Without atheris the same
targets run under hypothesis for the same time, from the same seeds and corpus, a weaker
(not coverage-guided) search; the reason is printed. Exit status 1 when anything was found:
fix the bug, then move the input to tests/fuzz_regressions/<target>/ (tests/test_fuzz_regressions.py
replays it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"
FINDINGS = HERE / "findings"
MAX_LEN = {"wire": 4096, "http1": 4096, "engine": 16384, "endpoint": 16384}  # libFuzzer's input size bound per target
# the engine's bodies (compressed, multipart, nested JSON) want long inputs from the start: libFuzzer
# otherwise grows its length bound slowly (382 bytes after 120 s); 1,487 edges in 180 s against 1,452
EXTRA_ARGS = {"engine": ["-len_control=0"], "endpoint": ["-len_control=0"]}
PER_INPUT_TIMEOUT_S = 10  # an input that takes longer is a finding (a hang)


def findings_of(target: str) -> set[Path]:
    return set(FINDINGS.glob(f"{target}-*"))


def run_atheris(target: str, seconds: int) -> tuple[int, int]:
    """(executions, exit status) of one libFuzzer run."""
    corpus = CORPUS / target
    cmd = [sys.executable, "-m", "tests.fuzz.atheris_main", target, str(corpus),
           f"-max_total_time={seconds}", f"-max_len={MAX_LEN[target]}", f"-timeout={PER_INPUT_TIMEOUT_S}",
           f"-artifact_prefix={FINDINGS}/{target}-", "-print_final_stats=1", "-print_pcs=0",
           *EXTRA_ARGS.get(target, [])]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=seconds + 120)
    log = FINDINGS / f"{target}.log"
    log.write_text(done.stdout)
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stdout)
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
    return (int(execs.group(1)) if execs else 0), done.returncode


def run_hypothesis(target: str, seconds: int) -> tuple[int, int]:
    """The same target under hypothesis until `seconds` pass: binary inputs and mutated corpus files."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from tests.fuzz.targets import TARGETS

    check = TARGETS[target]
    known = [p.read_bytes() for p in sorted((CORPUS / target).glob("*"))]
    for data in known:
        check(data)  # the corpus itself first: a regression shows at once
    mutated = st.tuples(st.sampled_from(known or [b""]), st.integers(0, 1 << 16), st.binary(max_size=8),
                        st.integers(0, 8)).map(lambda m: m[0][:m[1] % (len(m[0]) + 1)] + m[2] +
                                               m[0][m[1] % (len(m[0]) + 1) + m[3]:])
    runs = 0

    @settings(max_examples=500, deadline=PER_INPUT_TIMEOUT_S * 1000, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(mutated | st.binary(max_size=MAX_LEN[target]))
    def one(data: bytes) -> None:
        nonlocal runs
        runs += 1
        try:
            check(data)
        except Exception:
            FINDINGS.mkdir(exist_ok=True)
            path = FINDINGS / f"{target}-crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            path.with_suffix(".txt").write_text(traceback.format_exc())
            raise

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            one()
        except Exception:  # noqa: BLE001 - recorded in findings/ above; hypothesis shrank it
            traceback.print_exc()
            return runs, 1
    return runs, 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", choices=sorted(MAX_LEN))
    p.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    p.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    args = p.parse_args()
    FINDINGS.mkdir(exist_ok=True)
    use_atheris = args.engine == "atheris" or (args.engine == "auto" and importlib.util.find_spec("atheris"))
    if not use_atheris and args.engine == "auto":
        print("atheris is not installed (pip install -c constraints.txt '.[fuzz]'): running the targets under "
              "hypothesis instead, without coverage guidance", file=sys.stderr)
    failed = []
    for target in args.targets:
        (CORPUS / target).mkdir(parents=True, exist_ok=True)
        before = findings_of(target)
        started = time.monotonic()
        execs, status = (run_atheris if use_atheris else run_hypothesis)(target, args.seconds)
        took = time.monotonic() - started
        new = sorted(findings_of(target) - before)
        corpus = sum(1 for _ in (CORPUS / target).iterdir())
        print(f"fuzz {target:7} {'atheris' if use_atheris else 'hypothesis':10} {execs:>9} execs in {took:5.0f} s"
              f" = {execs / took:7.0f}/s, corpus {corpus} files, findings {len(new)}"
              + "".join(f"\n    {p.relative_to(REPO)}" for p in new), flush=True)
        if status != 0 or new:
            failed.append(target)
    if failed:
        print("findings in: " + " ".join(failed) + f" (inputs in {FINDINGS.relative_to(REPO)}/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
