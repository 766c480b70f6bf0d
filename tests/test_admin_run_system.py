"""`make run`'s connector config: the seed's bare enable-plugin.json is copied once to
VAR_DIR/kong.json (the file the Admin API writes), never written itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from addon.declarative import load_declarative
from tests.support.procs import REPO

sys.path.insert(0, str(REPO / "scripts"))
from run_system import connector_config  # noqa: E402


def test_bare_seed_becomes_var_kong_json_once(tmp_path: Path, certs: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
    seed = tmp_path / "enable-plugin.json"
    seed.write_bytes((REPO / "enable-plugin.json").read_bytes())
    var = tmp_path / "var"
    var.mkdir()
    path = connector_config(seed, var)
    assert path == var / "kong.json" and seed.read_bytes() == (REPO / "enable-plugin.json").read_bytes()
    decl = load_declarative(path.read_bytes(), base_dir=var)
    assert decl.global_plugin is not None and decl.global_plugin.instance_name == "wallarm-protection"
    assert decl.global_plugin.config.node_ca_file == str(tmp_path / "certs" / "ca.pem")
    changed = json.loads(path.read_text())
    changed["services"] = [{"name": "kept", "url": "http://127.0.0.1:9000"}]
    path.write_text(json.dumps(changed))  # as the Admin API would
    assert connector_config(seed, var) == path and json.loads(path.read_text())["services"][0]["name"] == "kept"


def test_declarative_config_is_used_as_it_is(tmp_path: Path) -> None:
    f = tmp_path / "kong.yaml"
    f.write_text('_format_version: "3.0"\n')
    assert connector_config(f, tmp_path / "var") == f
