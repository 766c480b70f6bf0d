"""Scripts measure this tree's code, not the copy of the project installed in the venv.

`make install` installs the project into .venv without keeping it editable, so a script run as
`.venv/bin/python scripts/X.py` (the docs' commands) finds that copy first unless it puts the
tree ahead of it: after any edit it would measure the old engine (replay_corpus.py did, and
printed the previous pass's figures)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("node", "addon", "wallarm_wire")


def _imports_project(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom) and node.module:
        return node.module.split(".")[0] in PROJECT_PACKAGES
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] in PROJECT_PACKAGES for alias in node.names)
    return False


def _puts_tree_first(node: ast.stmt) -> bool:
    """`sys.path.insert(0, ...)` or `sys.path[:0] = [...]` at module level."""
    text = ast.unparse(node)
    return text.startswith(("sys.path.insert(0,", "sys.path[:0] ="))


# a module the benchmarks import after putting the tree first themselves, never run on its own
IMPORTED_ONLY = {"hostile_shapes.py"}


def _scripts_importing_the_project() -> list[Path]:
    out = []
    for path in sorted((REPO / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        if path.name not in IMPORTED_ONLY and any(_imports_project(stmt) for stmt in tree.body):
            out.append(path)
    return out


SCRIPTS = _scripts_importing_the_project()


def test_the_check_sees_the_scripts_that_matter() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"replay_corpus.py", "bench_detect.py", "detector_scaling.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_script_puts_the_tree_ahead_of_the_installed_copy(path: Path) -> None:
    body = ast.parse(path.read_text()).body
    first_import = next(i for i, stmt in enumerate(body) if _imports_project(stmt))
    assert any(_puts_tree_first(stmt) for stmt in body[:first_import]), (
        f"{path.name} imports the project before putting {REPO} first on sys.path")


def test_replay_corpus_imports_this_tree_without_pythonpath(tmp_path: Path) -> None:
    # run from elsewhere, as the docs' command line does, with no PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the script's own top level (its --help exits before main's work), then which node it set up
    probe = ("import contextlib, io, runpy, sys\n"
             "script = sys.argv[1]; sys.argv = [script, '--help']\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "    runpy.run_path(script, run_name='__main__')\n"
             "import node; print(node.__file__)")
    out = subprocess.run([sys.executable, "-c", probe, str(REPO / "scripts" / "replay_corpus.py")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    # (the venv may live inside the tree: the package's own directory is what tells them apart)
    assert Path(out.stdout.strip().splitlines()[-1]).resolve() == REPO / "node" / "__init__.py", out.stdout
