"""Start real processes on loopback for end-to-end tests, and always stop them.

Every test process gets PYTHONPATH=<repo root> so that a subprocess runs the same code as
the test itself, whether the package was installed with `pip install .` or `-e .`.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MITMDUMP = str(VENV_BIN / "mitmdump")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_EPHEMERAL_START = _ephemeral_start()
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range. A port from bind(0)
    is an ephemeral one, which the kernel also gives to outgoing connections (test clients, wrk,
    the connector's pool to the node): one could take it between this probe and the server's bind."""
    low = max(1024, _EPHEMERAL_START // 2)
    for _ in range(200):
        port = random.randrange(low, _EPHEMERAL_START)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # the range is crowded: an ephemeral port, as before
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any process of the group (a ManagedProcess leads its own) is still there."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    if extra:
        env.update(extra)
    return env


class ManagedProcess:
    """A subprocess whose combined output goes to a temp file that tests can read and grep."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO):
        self.name = name
        self.cmd = cmd
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env(env), cwd=cwd, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.output())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {pattern!r} not seen (exit={self.proc.poll()}):\n{self.output()[-4000:]}")

    def wait_http(self, url: str, timeout: float = 20.0, ok_statuses: tuple[int, ...] = (200,)) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                    if r.status in ok_statuses:
                        return
            except urllib.error.HTTPError as e:
                if e.code in ok_statuses:
                    return
                last = e
            except Exception as e:  # noqa: BLE001 - not up yet
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {url} not ready ({last}; exit={self.proc.poll()}):\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
