"""scripts/bench_detect.py and its ModSecurity peer binding (scripts/peers/modsecurity.py).

The binding runs the real libmodsecurity3 with the real OWASP CRS (Debian packages
libmodsecurity3 and modsecurity-crs, installed on CI); its tests skip, saying why, only where
those are not installed. The script is run as a user runs it, on a sample of the project's
own cases, and its JSON and PNG are checked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.detect import engine as engine_mod
from wallarm_wire.protocol import RequestMessage
from tests.support.procs import REPO, child_env

sys.path.insert(0, str(REPO / "scripts"))
from peers.modsecurity import (
    DEBIAN_PACKAGES,
    CrsInstall,
    ModSecurityError,
    ModSecurityPeer,
    ModSecurityUnavailable,
    find_crs,
    load_library,
)


def _modsecurity_missing() -> str | None:
    try:
        load_library()
        find_crs()
    except ModSecurityUnavailable as exc:
        return str(exc)
    return None


MISSING = _modsecurity_missing()
needs_modsecurity = pytest.mark.skipif(MISSING is not None, reason=f"ModSecurity peer not installed: {MISSING}")

BROWSER = [
    (b"Host", b"shop.example"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
]


def get(target: str) -> RequestMessage:
    return RequestMessage("GET", target, BROWSER)


def post(target: str, ctype: str, body: bytes) -> RequestMessage:
    headers = BROWSER + [(b"Content-Type", ctype.encode()), (b"Content-Length", str(len(body)).encode())]
    return RequestMessage("POST", target, headers, body)


@pytest.fixture(scope="module")
def peer() -> ModSecurityPeer:
    with ModSecurityPeer(paranoia=1) as p:
        yield p


# ---------------------------------------------------------------------------- the binding


@needs_modsecurity
@pytest.mark.parametrize("msg", [
    pytest.param(get("/?q=%27%20or%201%3D1--"), id="sqli-query"),
    pytest.param(get("/download?file=../../../../etc/passwd"), id="traversal"),
    pytest.param(get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"), id="xss-query"),
    pytest.param(post("/api/comments", "application/json", b'{"c": "<script>alert(document.cookie)</script>"}'),
                 id="xss-json-body"),
    pytest.param(post("/login", "application/x-www-form-urlencoded", b"user=admin%27+union+select+password+from+users--"),
                 id="sqli-form-body"),
])
def test_peer_blocks_clear_attacks(peer: ModSecurityPeer, msg: RequestMessage, capfd: pytest.CaptureFixture) -> None:
    before = peer.log_messages
    verdict = peer.judge(msg)
    assert verdict.blocked and verdict.status == 403, verdict
    assert "Access denied with code 403" in verdict.log
    # the rule matches went to the log callback (counted), not to the process's stderr
    assert peer.log_messages > before
    assert "ModSecurity" not in capfd.readouterr().err


@needs_modsecurity
@pytest.mark.parametrize("msg", [
    pytest.param(get("/shop/products?category=shoes&sort=price_asc&page=2"), id="browser-get"),
    pytest.param(post("/api/reviews", "application/json", b'{"name": "Miles O\'Brien", "stars": 5, "text": "great shoes"}'),
                 id="json-post"),
    pytest.param(post("/beacon", "text/plain", b"event=view&t=1700000000"), id="text-plain-widened"),
])
def test_peer_passes_benign(peer: ModSecurityPeer, msg: RequestMessage) -> None:
    verdict = peer.judge(msg)
    assert (verdict.blocked, verdict.status) == (False, 0), verdict


@needs_modsecurity
def test_peer_paranoia_level_applies() -> None:
    # 942432 ("restricted SQL character anomaly", PL2) fires on a run of special characters
    # that PL1 lets through
    msg = get("/search?q=" + "%27%22%3B%28%29" * 3)
    with ModSecurityPeer(paranoia=1) as pl1, ModSecurityPeer(paranoia=2) as pl2:
        assert not pl1.judge(msg).blocked
        assert pl2.judge(msg).blocked


@needs_modsecurity
def test_peer_reports_rules_it_refuses(tmp_path: Path) -> None:
    bad = tmp_path / "crs-setup.conf"
    bad.write_text("SecNoSuchDirective On\n")
    with pytest.raises(ModSecurityError, match="SecNoSuchDirective"):
        ModSecurityPeer(crs=CrsInstall(bad, [], None, None, "test"))


def test_missing_crs_names_the_debian_packages(tmp_path: Path) -> None:
    # what a user without the packages is told (checked on any machine, on empty directories)
    with pytest.raises(ModSecurityUnavailable, match=f"apt-get install {DEBIAN_PACKAGES}"):
        find_crs((tmp_path / "crs-setup.conf",), (tmp_path / "rules",))
    assert DEBIAN_PACKAGES == "libmodsecurity3 modsecurity-crs"


@needs_modsecurity
def test_crs_found_in_debian_layout() -> None:
    crs = find_crs()
    names = [p.name for p in crs.rules]
    # load order as the package's owasp-crs.load: initialisation first, blocking evaluation
    # after the attack rules; the exclusion files around them
    assert names[0] == "REQUEST-901-INITIALIZATION.conf" and names == sorted(names)
    assert names.index("REQUEST-949-BLOCKING-EVALUATION.conf") > names.index("REQUEST-942-APPLICATION-ATTACK-SQLI.conf")
    assert crs.before is not None and crs.before.name.startswith("REQUEST-900-")
    assert crs.version.startswith("3.") or crs.version.startswith("4.")


# ---------------------------------------------------------------------------- the script


def run_bench(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "bench_detect.py"), "--no-progress", *args],
                          capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=timeout, check=True)


def check_rates(row: dict) -> None:
    for key in ("tpr", "tnr", "balanced_accuracy"):
        assert row[key] is None or 0 <= row[key] <= 1, (key, row)
    present = [x for x in (row["tpr"], row["tnr"]) if x is not None]
    assert row["balanced_accuracy"] == pytest.approx(sum(present) / len(present))
    assert (row["tpr"] is None) == (row["attacks"] == 0) and (row["tnr"] is None) == (row["benign"] == 0)
    if row["attacks"]:
        assert row["tpr"] == pytest.approx(row["attacks_blocked"] / row["attacks"])
    if row["benign"]:
        assert row["tnr"] == pytest.approx(1 - row["benign_blocked"] / row["benign"])


def check_times(st: dict, n: int) -> None:
    assert st["n"] == n
    assert 0 < st["median"] <= st["p99"] <= st["max"] < 5_000_000  # us; nothing near 5 s


def check_engine(engine: dict, requests: int) -> None:
    assert set(engine["sources"]) == {"cases", "cases-encoded"}
    assert sum(s["attacks"] + s["benign"] for s in engine["sources"].values()) == requests
    for source in engine["sources"].values():
        check_rates(source)
        for cls in source["classes"].values():
            check_rates(cls)
        assert sum(c["attacks"] for c in source["classes"].values()) == source["attacks"]
    assert engine["sources"]["cases-encoded"]["benign"] == 0  # attacks only: BA is the TPR
    check_times(engine["time_us"], requests)
    check_times(engine["cpu_us"], requests)
    check_times(engine["benign_time_us"], engine["sources"]["cases"]["benign"])


@needs_modsecurity
def test_bench_detect_side_by_side_on_own_cases(tmp_path: Path) -> None:
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    proc = run_bench("--peer", "modsecurity", "--limit", "500", "--json", str(out), "--plot", str(png))
    report = json.loads(out.read_text())
    engines = report["engines"]
    assert set(engines) == {"node", "modsecurity"}
    n = report["meta"]["requests"]
    assert 450 <= n <= 600
    for engine in engines.values():
        check_engine(engine, n)
    node, modsec = engines["node"]["sources"]["cases"], engines["modsecurity"]["sources"]["cases"]
    # the own cases are what the node's engine is tested on (tests/test_detect_cases.py);
    # CRS PL1 catches most plain attacks and lets most benign values through
    assert node["tpr"] >= 0.95 and node["tnr"] >= 0.95
    assert 0.4 <= modsec["tpr"] < 1 and modsec["tnr"] >= 0.7
    ratio = report["ratio"]
    assert ratio["median"] == pytest.approx(engines["modsecurity"]["time_us"]["median"] / engines["node"]["time_us"]["median"])
    assert ratio["p99"] == pytest.approx(engines["modsecurity"]["time_us"]["p99"] / engines["node"]["time_us"]["p99"])
    meta = report["meta"]
    assert (meta["paranoia"], meta["crs_version"]) == (1, find_crs().version)
    assert meta["modsecurity_version"].startswith("ModSecurity v3")
    assert engines["modsecurity"]["log_messages"] > 0
    # both engines' rows and the ratio are printed
    assert "modsecurity" in proc.stdout and "time ratio modsecurity/node" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_bench_detect_node_alone_with_hostile_inputs(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    run_bench("--limit", "200", "--hostile", "--repeat", "1", "--json", str(out))
    report = json.loads(out.read_text())
    assert set(report["engines"]) == {"node"} and "ratio" not in report
    engine = report["engines"]["node"]
    check_engine(engine, report["meta"]["requests"])
    hostile = engine["hostile"]
    assert len(hostile["cases"]) >= 20
    assert hostile["worst_us"] == max(c["max_us"] for c in hostile["cases"].values())
    # the work per request is bounded: unbounded work (backtracking, a 50 MB inflate, 100k-deep
    # recursion) costs seconds here. Issue 4's 20 ms goal is the benchmark's to measure, not a
    # test's: a slow or busy CI machine must not fail it. The bound is the engine's own time bound
    # for the largest shape (1 MiB: 20 ms + 300 ms), with room for a cold first run: the 1 MiB
    # `../` form takes ~100 ms warm and took 158 ms once in CI, against the 150 ms this was
    bound_us = 1.5 * (engine_mod.DEADLINE_S + engine_mod.DEADLINE_S_PER_MIB) * 1e6
    assert 0 < hostile["worst_cpu_us"] < bound_us


def test_bench_detect_passes_take_each_requests_median(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = run_bench("--limit", "120", "--passes", "3", "--json", str(out))
    report = json.loads(out.read_text())
    engine = report["engines"]["node"]
    assert report["meta"]["passes"] == 3 and len(engine["by_pass"]) == 3
    assert engine["verdicts_differing_between_passes"] == 0
    check_engine(engine, report["meta"]["requests"])
    for one in engine["by_pass"]:
        check_times(one["time_us"], report["meta"]["requests"])
    assert "median over 3 passes" in proc.stdout


def test_a_requests_time_is_its_median_over_the_passes() -> None:
    import bench_detect

    passes = [bench_detect.Timings([True, False], [5.0, 1.0], [4.0, 1.0]),
              bench_detect.Timings([True, False], [1.0, 90.0], [1.0, 80.0]),
              bench_detect.Timings([True, True], [3.0, 2.0], [2.0, 3.0])]
    t = bench_detect.per_request_median(passes)
    assert (t.wall_us, t.cpu_us, t.blocked) == ([3.0, 2.0], [2.0, 3.0], [True, False])
    assert bench_detect.verdicts_differing(passes) == [1]


def copy_of_the_engine(tmp_path: Path) -> Path:
    """This tree's engine in another directory, without its compiled modules: a harness that
    imported the tree's own instead would report it compiled (as CI builds it) or from here."""
    other = tmp_path / "other"
    shutil.copytree(REPO / "node", other / "node", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return other


def test_bench_detect_times_another_checkouts_engine(tmp_path: Path) -> None:
    other = copy_of_the_engine(tmp_path)
    out = tmp_path / "out.json"
    run_bench("--limit", "60", "--node-from", str(other), "--json", str(out))
    meta = json.loads(out.read_text())["meta"]
    assert meta["node_tree"] == str(other.resolve()) and meta["node_compiled"] is False
    with pytest.raises(subprocess.CalledProcessError) as err:
        run_bench("--limit", "10", "--node-from", str(tmp_path / "nowhere"))
    assert "no node/detect/engine.py" in err.value.stderr


def test_bench_detect_times_a_base_engine_in_the_same_run(tmp_path: Path) -> None:
    other = copy_of_the_engine(tmp_path)
    out = tmp_path / "out.json"
    proc = run_bench("--limit", "150", "--passes", "2", "--base", str(other), "--json", str(out))
    report = json.loads(out.read_text())
    engines = report["engines"]
    assert set(engines) == {"node", "base"}
    n = report["meta"]["requests"]
    for engine in engines.values():
        check_engine(engine, n)
    assert report["meta"]["base_tree"] == str(other.resolve()) and report["meta"]["base_compiled"] is False
    # the same engine's code on both sides: not one verdict differs
    assert set(report["verdicts_vs_base"].values()) == {0}
    assert engines["base"]["sources"] == engines["node"]["sources"]
    ratio = report["node_vs_base"]
    assert ratio["benign_p99"] == pytest.approx(engines["node"]["benign_time_us"]["p99"] / engines["base"]["benign_time_us"]["p99"])
    assert len(report["node_vs_base_by_pass"]) == 2
    assert "time ratio node/base" in proc.stdout
