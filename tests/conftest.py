"""Fixtures shared by several test files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.console import start_console, stop_console
from tests.support.postgres import throwaway_cluster
from tests.support.procs import REPO, child_env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`sources_only` tests patch functions of node/detect to build their reference; compiled,
    those modules call each other past any patch, and the test would compare the code with
    itself: skipped then. `make test` runs them again against the sources
    (WALLARM_DETECT_SOURCES=1)."""
    import node.detect

    if not node.detect.COMPILED:
        return
    skip = pytest.mark.skip(reason="patches node/detect internals: run against the sources (make test does)")
    for item in items:
        if item.get_closest_marker("sources_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Development certificates from `scripts/gen_certs.py` (CA, node, proxy), made once per run."""
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out), "--quiet"],
                   check=True, env=child_env(), cwd=REPO, timeout=60)
    return out


@pytest.fixture
async def console(tmp_path):  # type: ignore[no-untyped-def]
    """The console app in-process, on a real SQLite store and the node's real policy."""
    c = await start_console(tmp_path)
    try:
        yield c
    finally:
        await stop_console(c)


@pytest.fixture(scope="session")
def pg_cluster():  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL cluster for the whole run (or $WALLARM_TEST_POSTGRES_DSN's server);
    skipped without PostgreSQL, a failure in CI (tests/support/postgres.py)."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request, tmp_path):  # type: ignore[no-untyped-def]
    """Open stores of each backend in turn: `await stores.open("name", **options)`."""
    from store_support import Stores

    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None
    factory = Stores(request.param, tmp_path, cluster)
    try:
        yield factory
    finally:
        await factory.close_all()
