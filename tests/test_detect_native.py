"""node/detect's compiled modules run only when they were built from the sources beside them
(node/detect/__init__.py): an edited source, or no build record, imports the sources instead."""

from __future__ import annotations

import importlib.machinery
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import REPO, child_env

DETECT = REPO / "node" / "detect"
EXTENSIONS = [p for suffix in importlib.machinery.EXTENSION_SUFFIXES for p in DETECT.glob(f"*{suffix}")]

pytestmark = pytest.mark.skipif(not (DETECT / "_native.json").exists() or not EXTENSIONS,
                                reason="node/detect is not compiled in this tree (make native)")

PROBE = """
import node.detect, node.detect.engine as engine, node.detect.readings as readings, node.detect.sqli as sqli
print(node.detect.COMPILED, engine.__file__.endswith(".py"))
print(readings._b64_candidates.__name__, "tokens_py" if sqli._tokens is sqli._tokens_py else "tokens_c")
"""


def _tree(tmp_path: Path) -> Path:
    """A copy of the packages and of the compiled group's shared library (top level)."""
    tree = tmp_path / "tree"
    for package in ("node", "wallarm_wire"):
        shutil.copytree(REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    for lib in REPO.glob("*__mypyc.cpython-*"):
        shutil.copy2(lib, tree / lib.name)
    return tree


def _probe(tree: Path, extra: dict[str, str] | None = None) -> tuple[str, str]:
    env = child_env()
    env.pop("WALLARM_DETECT_SOURCES", None)  # (make test's second pass sets it for itself)
    env.update(extra or {})
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tree,
                          timeout=60, check=True)
    modules, helpers = done.stdout.strip().splitlines()
    # the base64 token search and the SQL tokenizer: the C helpers (_b64scan.c, _sqltok.c) only
    # beside compiled modules
    assert helpers == ("text_tokens tokens_c" if modules == "True False" else "_b64_candidates_py tokens_py")
    return modules, done.stderr


def test_a_tree_built_from_its_sources_runs_compiled(tmp_path: Path) -> None:
    out, err = _probe(_tree(tmp_path))
    assert out == "True False" and "compiled modules built from other sources" not in err


@pytest.mark.parametrize("helper", ["_b64scan", "_sqltok"])
def test_an_edited_c_helper_makes_the_package_import_its_sources(tmp_path: Path, helper: str) -> None:
    tree = _tree(tmp_path)
    source = tree / "node" / "detect" / f"{helper}.c"
    source.write_text(source.read_text() + "\n/* edited after make native */\n")
    out, err = _probe(tree)
    assert out == "False True" and f"compiled modules built from other sources ({helper})" in err


def test_an_edited_source_makes_the_package_import_its_sources(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    readings = tree / "node" / "detect" / "readings.py"
    readings.write_text(readings.read_text() + "\n# edited after make native\n")
    out, err = _probe(tree)
    assert out == "False True"  # every module from its source: engine.py too, not only readings.py
    assert "compiled modules built from other sources (readings)" in err


def test_no_build_record_imports_the_sources(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "node" / "detect" / "_native.json").unlink()
    out, err = _probe(tree)
    assert out == "False True" and "compiled modules built from other sources" in err


def test_the_sources_on_request(tmp_path: Path) -> None:
    out, err = _probe(_tree(tmp_path), {"WALLARM_DETECT_SOURCES": "1"})
    assert out == "False True" and "compiled modules built from other sources" not in err
