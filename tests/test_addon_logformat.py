"""`--set wallarm_log_format=json`: every line mitmdump logs is one JSON object (real mitmdump)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from mitmproxy.test import taddons

from addon.logformat import LogFormat
from tests.support.procs import free_port
from tests.support.proxy import start_proxy, start_upstream, write_config

pytestmark = pytest.mark.e2e


def test_mitmdump_logs_json_lines_with_the_nodes_keys(tmp_path: Path) -> None:
    upstream = start_upstream()
    down_node = f"http://127.0.0.1:{free_port()}/"  # nothing listens: the connector fails open and says so
    cfg = write_config(tmp_path / "enable-plugin.json", down_node, blocking=True, timeout_ms=500)
    proxy = start_proxy(upstream.url, cfg, "--set", "wallarm_log_format=json")
    try:
        r = httpx.get(f"http://127.0.0.1:{proxy.port}/products?q=lamp", trust_env=False, timeout=10)
        assert r.status_code == 200  # fail-open: the node cannot be reached
        proxy.proc.wait_for_log("fail", timeout=10)
    finally:
        proxy.stop()
        upstream.stop()
    first, *rest = [line for line in proxy.proc.output().splitlines() if line.strip()]
    assert "Loading script" in first  # mitmproxy says it before the script (and its option) exists
    lines = [json.loads(line) for line in rest]
    assert lines and all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    assert any(line["level"] == "WARNING" and "fail" in line["msg"] for line in lines)
    assert any("listening at 127.0.0.1" in line["msg"] for line in lines)
    assert any(line["msg"].startswith("config loaded") for line in lines)


def test_an_unknown_format_is_refused_by_the_option() -> None:
    with taddons.context(LogFormat()) as tctx:
        with pytest.raises(Exception, match="wallarm_log_format"):
            tctx.configure(tctx.master.addons.get("logformat"), wallarm_log_format="xml")
