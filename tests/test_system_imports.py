"""Every import declared: `pip install .` into a fresh venv, then import every module of
wallarm_wire/, addon/ and node/ with only the declared dependencies installed.

Slow-ish (a venv and an install, ~1 minute with pip's cache); CI runs it like every test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import imports_check
from tests.support.procs import REPO

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "setup.py", "README.md", "constraints.txt", "wallarm_wire", "addon", "node")
# what `make native` leaves beside the sources: the Dockerfile's context leaves it out too
BUILT_IN_PLACE = ("__pycache__", "*.pyc", "*.so", "_native.json")


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: the venv must find the project where pip installed it, not in the tree.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the project (from a copy of its sources, as the Dockerfile copies them)
    and nothing but its declared dependencies, at the versions in constraints.txt."""
    root = tmp_path_factory.mktemp("fresh")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(*BUILT_IN_PLACE))
        else:
            shutil.copy2(path, src / name)
    venv = root / "venv"
    r = _run([sys.executable, "-m", "venv", str(venv)], root, 120)
    assert r.returncode == 0, r.stderr
    r = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "-c", "constraints.txt", "."], src, 900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def report(fresh_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    elsewhere = tmp_path_factory.mktemp("cwd")  # not the repository: nothing importable by accident
    # -I: the script's own folder (tests/support, which has a node.py) is not put on sys.path
    r = _run([str(fresh_venv / "bin" / "python"), "-I", str(REPO / "tests" / "support" / "imports_check.py")],
             elsewhere, 300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_modules_come_from_the_installed_package(report: dict, fresh_venv: Path) -> None:
    for package, location in report["locations"].items():
        assert Path(location).is_relative_to(fresh_venv), (package, location)


def test_every_module_imports_with_only_the_declared_dependencies(report: dict) -> None:
    assert report["import_errors"] == {}


def test_every_third_party_import_is_declared(report: dict) -> None:
    assert report["undeclared"] == {}
    # the check saw the imports it is about (an empty list would pass trivially)
    assert {"aiohttp", "multidict", "pydantic", "yaml", "mitmproxy", "hyperscan", "jinja2"} <= set(report["third_party"])


def test_one_version_everywhere(report: dict, fresh_venv: Path) -> None:
    from wallarm_wire.version import __version__

    assert report["version"] == __version__
    r = _run([str(fresh_venv / "bin" / "wallarm-node"), "--version"], fresh_venv, 60)
    assert r.returncode == 0 and r.stdout.strip() == f"wallarm-node {__version__}", r.stdout + r.stderr


def test_the_declaration_check_catches_a_missing_declaration() -> None:
    # In this venv, with multidict left out of the declared set, its import is reported.
    imports = imports_check.third_party_imports(REPO / "node")
    declared = imports_check.declared_runtime() - {"multidict"}
    missing = imports_check.undeclared(imports, declared)
    assert list(missing) == ["multidict"] and "node/console/params.py" in missing["multidict"]


def test_constraints_pin_the_dependency_closure() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "lock_constraints.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _compiler() -> bool:
    import sysconfig

    return shutil.which("cc") is not None and Path(sysconfig.get_paths()["include"], "Python.h").exists()


@pytest.mark.skipif(not _compiler(), reason="no C compiler or Python.h: pip install . installs the sources")
def test_pip_install_compiles_the_detection_engine(fresh_venv: Path, tmp_path: Path) -> None:
    """setup.py's mypyc build: the installed node/detect runs compiled, from its own record,
    with its C helpers (the base64 token search, _b64scan.c; the SQL tokenizer, _sqltok.c) in use."""
    probe = ("import node.detect, node.detect.engine as e, node.detect.readings as r, node.detect.sqli as s; "
             "print(node.detect.COMPILED, e.__file__, r._b64_candidates.__name__, s._tokens is not s._tokens_py)")
    r = _run([str(fresh_venv / "bin" / "python"), "-I", "-c", probe], tmp_path, 60)
    assert r.returncode == 0, r.stderr
    compiled, where, search, sql_tokens_in_c = r.stdout.split()
    assert compiled == "True" and where.endswith(".so") and Path(where).is_relative_to(fresh_venv), r.stdout
    assert search == "text_tokens" and sql_tokens_in_c == "True", r.stdout
    assert "built from other sources" not in r.stderr
