"""The node's config on SIGHUP, with a real node process: live changes apply, faults keep the last good."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

from tests.support import config_faults
from tests.support.node import NodeClient, NodeHandle, start_node


def metric(node: NodeHandle, name: str) -> float:
    with urllib.request.urlopen(node.console_url + "/metrics", timeout=5) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def hup_and_wait(node: NodeHandle, name: str, want: float, timeout: float = 10.0) -> None:
    os.kill(node.proc.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(node, name) >= want:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {want}:\n{node.output()[-3000:]}")


def attack_verdict(c: NodeClient) -> str:
    status, verdict = c.request("GET", "/etc/passwd")
    assert status in (200, 403)
    return verdict["action"]


def test_sighup_applies_live_settings_and_keeps_the_last_good_on_faults(tmp_path: Path) -> None:
    node = start_node(tmp_path, mode="block")
    try:
        config = json.loads(node.config_path.read_text())
        with NodeClient(node) as c:
            assert attack_verdict(c) == "block"
            # a live change: the mode, a denylist seed and the log level
            config.update(mode="monitoring", log_level="DEBUG", ip_lists={"deny": ["198.51.100.0/24"]})
            node.config_path.write_text(json.dumps(config))
            hup_and_wait(node, "wallarm_node_config_reloads_total", 1)
            assert attack_verdict(c) == "pass"
            assert c.request("GET", "/", ip="198.51.100.7")[1]["action"] == "block"
            # faults: each refused with one ERROR line, the monitoring config keeps serving
            good = node.config_path.read_bytes()
            bad = {**config_faults.faults(good), "invalid value": lambda p: p.write_text(json.dumps({**config, "mode": "x"}))}
            del bad["dangling symlink"]  # reads as "deleted": the node reports every SIGHUP's outcome anyway
            for i, (name, make) in enumerate(bad.items(), start=1):
                config_faults.apply(node.config_path, make)
                hup_and_wait(node, "wallarm_node_config_errors_total", i)
                assert attack_verdict(c) == "pass", name
            errors = [line for line in node.output().splitlines() if "config reload refused" in line]
            assert len(errors) == len(bad), errors
            assert all("keeping the last good config" in e and str(node.config_path) in e for e in errors)
            assert any("byte limit" in e for e in errors) and any("a FIFO" in e for e in errors)
            assert metric(node, "wallarm_node_config_reloads_total") == 1
            # back to a good file; a field that needs a restart is named and not applied
            config_faults.remove(node.config_path)
            config.update(mode="block", max_body_bytes=1234)
            node.config_path.write_text(json.dumps(config))
            hup_and_wait(node, "wallarm_node_config_reloads_total", 2)
            assert attack_verdict(c) == "block"
            assert re.search(r"needing a restart \(running values kept\): max_body_bytes", node.output())
            # an override's body limit over the running limit (only the file's new one allows it): refused
            running = 8 * 1024 * 1024  # the default max_body_bytes the node started with
            config.update(max_body_bytes=2 * running, partial_inspection="monitor",
                          overrides=[{"path_prefix": "/big", "mode": "block", "max_body_bytes": running + 1}])
            node.config_path.write_text(json.dumps(config))
            hup_and_wait(node, "wallarm_node_config_errors_total", len(bad) + 1)
            assert "with the running values of max_body_bytes (they need a restart)" in node.output()
            assert attack_verdict(c) == "block"
        assert node.proc.proc.poll() is None
    finally:
        assert node.stop() == 0


def test_sighup_storm_while_the_file_is_swapped(tmp_path: Path) -> None:
    """100 swaps and 100 SIGHUPs a second for 2 s under traffic: every verdict is one of the two
    good configs', never an error; each reload either applies or is refused and counted."""
    node = start_node(tmp_path, mode="monitoring")
    try:
        config = json.loads(node.config_path.read_text())
        good_monitoring = json.dumps(config).encode()
        good_block = json.dumps({**config, "mode": "block"}).encode()
        versions = [good_block, b"{", good_monitoring, b"mode: [", good_block[:-9]]
        stop = threading.Event()

        def storm() -> None:
            tmp = node.config_path.with_name("swap.tmp")
            i = 0
            while not stop.is_set():
                tmp.write_bytes(versions[i % len(versions)])
                os.replace(tmp, node.config_path)
                os.kill(node.proc.proc.pid, signal.SIGHUP)
                i += 1
                time.sleep(0.01)

        thread = threading.Thread(target=storm, daemon=True)
        thread.start()
        actions = []
        deadline = time.monotonic() + 2.0
        with NodeClient(node) as c:
            while time.monotonic() < deadline:
                actions.append(attack_verdict(c))
        stop.set()
        thread.join(5)
        node.config_path.write_bytes(good_block)
        before = metric(node, "wallarm_node_config_reloads_total")
        hup_and_wait(node, "wallarm_node_config_reloads_total", before + 1)
        with NodeClient(node) as c:
            assert attack_verdict(c) == "block"
        assert set(actions) <= {"pass", "block"} and len(actions) > 20
        reloads = metric(node, "wallarm_node_config_reloads_total")
        errors = metric(node, "wallarm_node_config_errors_total")
        attempts = node.output().count("SIGHUP: reloading the config")
        assert reloads >= 1 and errors >= 1 and reloads + errors == attempts
        assert node.output().count("config reload refused") == errors
        assert node.proc.proc.poll() is None
    finally:
        assert node.stop() == 0
