"""scripts/bench_tail.py: run as a user runs it (two trees, each in a process of its own), on a
small corpus written here; its report's arithmetic, and that an ablation really switches a part
of the engine off (else its figures would say nothing)."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import REPO, child_env

SCRIPT = REPO / "scripts" / "bench_tail.py"
HEADERS = [["Host", "shop.example"], ["User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0"]]


def _record(i: int, label: str, method: str, uri: str, body: bytes = b"", ctype: str | None = None) -> dict:
    headers = HEADERS + ([["Content-Type", ctype]] if ctype else [])
    return {"id": f"t:{i}", "source": "t", "label": label, "class": "" if label == "benign" else "xss",
            "method": method, "uri": uri, "headers": headers, "body_b64": base64.b64encode(body).decode()}


def _corpus(tmp_path: Path) -> Path:
    beacon = json.dumps({"events": [{"url": f"https://example.com/p/{i}?q=a%20b", "self": "top", "n": i}
                                    for i in range(60)], "payload": json.dumps({"k": "v" * 40})}).encode()
    records = [_record(i, "benign", "GET", f"/shop/items?page={i}&q=shoes") for i in range(40)]
    records += [_record(100 + i, "benign", "POST", "/log", beacon, "application/json") for i in range(3)]
    records.append(_record(200, "attack", "GET", "/q?x=%3Cscript%3Ealert(1)%3C/script%3E"))
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=child_env())


def test_report_against_a_baseline_tree(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    out = tmp_path / "tail.json"
    done = _run("--baseline", str(REPO), "--rounds", "2", "--ablate", "xss,sqli,shell", "--json", str(out), str(corpus))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert r["requests"] == 43  # the benign ones only
    assert r["allowed_over"] == 43 - int(43 * 0.99)
    assert r["bound_us"] == pytest.approx(r["baseline"]["p99_us"] * 1.2)
    assert 0 <= r["crossing"]["requests"] <= r["over_bound"] <= 43
    assert [a["without"] for a in r["ablations"]] == [["xss", "sqli", "shell"]]
    assert "crossing (under the bound in the baseline, over it now)" in done.stdout
    assert "without xss,sqli,shell" in done.stdout


def test_a_bound_nothing_reaches_is_met(tmp_path: Path) -> None:
    done = _run("--baseline-rev", "HEAD", "--rounds", "1", "--bound", "1000", "--json", str(tmp_path / "r.json"),
                str(_corpus(tmp_path)))
    assert done.returncode == 0, done.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["over_bound"] == 0 and r["crossing"]["requests"] == 0
    assert "(met)" in done.stdout
    assert r["baseline"]["tree"] == "HEAD (git archive)"


def test_a_missing_corpus_is_named(tmp_path: Path) -> None:
    done = _run("--baseline", str(REPO), str(tmp_path / "nothere.jsonl.gz"))
    assert done.returncode == 2
    assert "nothere.jsonl.gz" in done.stderr


def test_an_unknown_part_is_refused(tmp_path: Path) -> None:
    done = _run("--baseline", str(REPO), "--rounds", "1", "--ablate", "nosuchpart", str(_corpus(tmp_path)))
    assert done.returncode != 0
    assert "nothing to ablate called 'nosuchpart'" in done.stderr


def test_ablations_switch_the_part_off() -> None:
    """An ablated analyser finds nothing, an ablated reading is not read: the script measures
    the engine without them, not the same engine twice."""
    code = f"""
import sys
sys.path[:0] = [{str(REPO)!r}, {str(REPO / "scripts")!r}]
from bench_tail import _ablate
from node.detect.engine import Engine
from wallarm_wire.protocol import RequestMessage
hdr = [(b"Host", b"a.example")]
xss = RequestMessage("GET", "/q?x=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", hdr)
b64 = RequestMessage("GET", "/q?x=" + "note%20" + "JyBVTklPTiBTRUxFQ1QgcGFzc3dvcmQgRlJPTSB1c2Vycy0t", hdr)
engine = Engine()
before = [sorted({{a.rule_id for a in engine.analyze_request(m).attacks}}) for m in (xss, b64)]
_ablate(["xss", "base64-tokens"])
engine = Engine()
after = [sorted({{a.rule_id for a in engine.analyze_request(m).attacks}}) for m in (xss, b64)]
print(before, after)
assert any(r.startswith("xss.structure.") for r in before[0]) and before[1], before
assert not any(r.startswith("xss.structure") for r in after[0]), after
assert after[1] == [], after
"""
    # on the sources, as bench_tail.py runs its ablations: compiled modules call past a patch
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=child_env({"WALLARM_DETECT_SOURCES": "1"}))
    assert done.returncode == 0, done.stdout + done.stderr
