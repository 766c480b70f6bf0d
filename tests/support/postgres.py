"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, pg_ctl start on a free
loopback port (its unix socket in the same dir), stopped and removed at the end.

`WALLARM_TEST_POSTGRES_DSN` (a DSN of a server the tests may create databases on) replaces the
cluster. Without it and without PostgreSQL's binaries, the PostgreSQL tests skip on a developer's
machine and FAIL in CI (`CI=true`): a CI run must not go green without them.
PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` system user
that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.procs import free_port

ENV_DSN = "WALLARM_TEST_POSTGRES_DSN"
ENV_BIN = "WALLARM_TEST_POSTGRES_BIN"  # a directory with initdb and pg_ctl, if not the newest Debian one
RUN_AS = "postgres"
START_TIMEOUT = 60


def find_bin_dir() -> Path | None:
    given = os.environ.get(ENV_BIN)
    candidates = [given] if given else []
    # Debian keeps the server binaries out of PATH, one directory per major version: the newest.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def unavailable(reason: str) -> None:
    """No PostgreSQL: fail in CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@dataclass(slots=True)
class Cluster:
    admin_dsn: str  # connects to the `postgres` database as a superuser

    def create_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return _with_dbname(self.admin_dsn, name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = urlsplit(dsn).path.lstrip("/")
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_dbname(dsn: str, name: str) -> str:
    """The same server URL with another database (the node's `db` setting wants a URL)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{ENV_DSN} must be a postgresql:// URL, not {dsn!r}")
    return urlunsplit(parts._replace(path="/" + name))


def _run_as(user: str | None, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    given = os.environ.get(ENV_DSN)
    if given:
        yield Cluster(given)
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("initdb/pg_ctl not found (apt-get install postgresql, or set WALLARM_TEST_POSTGRES_DSN)")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(RUN_AS)
        except KeyError:
            unavailable(f"running as root and there is no {RUN_AS!r} user to run the cluster as")
        user = RUN_AS
    # Not pytest's tmp dir: its parents are 0700 root, which the postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="wallarm-pg-"))
    data = base / "data"
    if user is not None:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    port = free_port()
    try:
        done = _run_as(user, [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                              "-E", "UTF8", "--locale=C", "--no-sync"], timeout=START_TIMEOUT)
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        # Durability off: a test cluster is thrown away; it makes CREATE DATABASE and commits cheap.
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=32MB")
        done = _run_as(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o",
                              options, "-w", "-t", str(START_TIMEOUT), "start"], timeout=START_TIMEOUT + 10)
        if done.returncode:
            log = (base / "server.log").read_text("utf-8", "replace") if (base / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log[-3000:]}")
        try:
            yield Cluster(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        finally:
            _run_as(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
