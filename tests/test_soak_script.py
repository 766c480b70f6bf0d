"""scripts/soak.py end to end, in its short form: real node, mitmdump + addon, demo upstream.

The 30-minute run's numbers live in docs/reliability.md; here a 20-second run with a node
restart and config changes every few seconds must finish by itself with a consistent summary,
a PNG, and no process left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.procs import REPO, child_env, group_alive


@pytest.mark.e2e
def test_short_soak_restarts_the_node_changes_the_config_and_reports(tmp_path):
    out, png, table = tmp_path / "soak.json", tmp_path / "soak.png", tmp_path / "soak.csv"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "soak.py"), "--seconds", "20", "--rate", "30",
         "--concurrency", "8", "--restart-every", "8", "--config-every", "5", "--sample-every", "1",
         "--json", str(out), "--csv", str(table), "--plot", str(png)],
        check=False, capture_output=True, text=True, timeout=240, env=child_env(), cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "soak summary" in run.stdout and "mitmdump RSS growth" in run.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads(out.read_text())
    s, samples, events = report["summary"], report["samples"], report["events"]
    assert s["requests"] > 100 and s["requests"] == sum(x["requests"] for x in samples)
    assert s["errors"] == 0, s["errors_by_kind"]  # a node restart fails open, it is no client error
    # the node was really restarted (new pids, same store) and the config really reloaded
    assert s["node_restarts"] >= 2 and len(report["processes"]["node"]) == s["node_restarts"] + 1
    assert len({x["node_pid"] for x in samples}) >= 2
    assert s["config_changes"] >= 3 and s["config_reloads"] >= 1 and s["config_errors"] == 0
    # every attack is blocked, or passed while the node gave no verdict (a counted fail-open)
    assert s["attacks_sent"] > 0 and s["attacks_blocked"] > 0
    assert s["attacks_blocked"] + s["attacks_passed_without_verdict"] == s["attacks_sent"]
    assert sum(s["fail_open_by_cause"].values()) >= s["attacks_passed_without_verdict"]
    assert s["connector_blocked"] == s["attacks_blocked"]
    for x in samples:
        assert x["proxy_rss_kib"] > 0 and x["proxy_fds"] > 0 and x["store_bytes"] > 0
    assert samples[-1]["store_bytes"] > 0 and s["proxy_rss_growth_pct"] is not None
    assert table.read_text().splitlines()[0].startswith("t,requests,errors")
    assert len(table.read_text().splitlines()) == len(samples) + 1

    pids = [report["processes"]["mitmdump"], report["processes"]["upstream"], *report["processes"]["node"]]
    assert not [p for p in pids if group_alive(p)]

    # a saved run is summarised and plotted again from its JSON alone, with the same figures
    again, png2 = tmp_path / "again.json", tmp_path / "again.png"
    rerun = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "soak.py"), "--from-json", str(out), "--json", str(again),
         "--plot", str(png2)], check=False, capture_output=True, text=True, timeout=60, env=child_env(), cwd=REPO)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    redone = json.loads(again.read_text())
    assert redone["summary"] == s and redone["samples"] == samples and redone["events"] == events
    assert png2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "soak summary" in rerun.stdout
