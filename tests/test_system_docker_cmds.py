"""The Dockerfile's commands, run for real without Docker: each image's ENTRYPOINT/CMD and its
HEALTHCHECK are taken from the Dockerfile, container paths mapped to temp files and 0.0.0.0
ports to free loopback ports, then started. A typo in a CMD, or a healthcheck that probes the
wrong port, fails here instead of in a user's `docker compose up`."""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import REPO, VENV_BIN, ManagedProcess, child_env, free_port

pytestmark = pytest.mark.e2e

DOCKERFILE = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
CONTAINER_PORTS = ("8000", "8001", "5050", "8090", "9000")


def stage(target: str) -> dict[str, object]:
    m = re.search(rf"^FROM \S+ AS {re.escape(target)}$(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert m, target
    body = m.group(1)
    out: dict[str, object] = {"env": {}}
    for line in body.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("CMD", "ENTRYPOINT"):
            out[word] = json.loads(rest)
        elif word == "HEALTHCHECK":
            out[word] = json.loads(rest[rest.index(" CMD ") + 5:])
        elif word == "ENV":
            out["env"].update(kv.split("=", 1) for kv in shlex.split(rest))  # type: ignore[union-attr]
    return out


class Mapper:
    """Container paths and ports -> this machine's temp files and free loopback ports."""

    def __init__(self, tmp: Path):
        self.ports = {p: str(free_port()) for p in CONTAINER_PORTS}
        self.paths = {"/etc/wallarm/certs": str(tmp / "certs"), "/etc/wallarm/enable-plugin.json":
                      str(tmp / "enable-plugin.json"), "/var/lib/wallarm": str(tmp / "data"),
                      "/app/addon": str(REPO / "addon"), "/app/scripts": str(REPO / "scripts")}

    def __call__(self, arg: str) -> str:
        for old, new in self.paths.items():
            arg = arg.replace(old, new)
        arg = arg.replace("0.0.0.0", "127.0.0.1")
        # compose service names resolve to loopback here (the node cert has the SAN 127.0.0.1 too)
        return re.sub(r"\b(127\.0\.0\.1|upstream|node):(\d{4})\b",
                      lambda m: f"127.0.0.1:{self.ports.get(m.group(2), m.group(2))}", arg)


@pytest.fixture()
def mapper(tmp_path: Path) -> Mapper:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(tmp_path / "certs")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / "data").mkdir()
    m = Mapper(tmp_path)
    # the compose file's plugin config, as mounted into the proxy container
    (tmp_path / "enable-plugin.json").write_text(m((REPO / "docker" / "enable-plugin.json").read_text()))
    return m


def _exe(name: str) -> str:
    return str(VENV_BIN / name) if (VENV_BIN / name).exists() else name


def start(target: str, m: Mapper, **env_overrides: str) -> tuple[ManagedProcess, list[str]]:
    s = stage(target)
    argv = [m(a) for a in [*s.get("ENTRYPOINT", []), *s.get("CMD", [])]]  # type: ignore[misc]
    argv[0] = sys.executable if argv[0] == "python" else _exe(argv[0])
    env = {k: m(v) for k, v in s["env"].items()}  # type: ignore[union-attr]
    env.update(env_overrides)  # like `docker run -e NAME=value`
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    health = [m(a) for a in s["HEALTHCHECK"]]  # type: ignore[union-attr]
    health[0] = sys.executable if health[0] == "python" else health[0]
    return ManagedProcess(f"docker-{target}", argv, env=env), health


def healthy(proc: ManagedProcess, health: list[str], timeout: float = 90) -> None:
    """Run the image's HEALTHCHECK command until it succeeds, as Docker would."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.output()[-3000:]
        r = subprocess.run(health, capture_output=True, text=True, env=child_env(), timeout=10)
        if r.returncode == 0:
            return
        last = r.stderr[-300:]
        time.sleep(0.3)
    raise AssertionError(f"{proc.name} never healthy: {last}\n{proc.output()[-3000:]}")


def test_every_image_command_starts_and_passes_its_healthcheck(mapper: Mapper) -> None:
    procs: list[ManagedProcess] = []
    try:
        # MITMDUMP_ARGS must split into words (as one word mitmdump would take it for a flow
        # filter); flow_detail=0 is visible: no per-request lines in the connector's log.
        extra = {"connector": {"MITMDUMP_ARGS": "--set block_global=false --set flow_detail=0"}}
        for target in ("node", "demo-upstream", "connector"):
            proc, health = start(target, mapper, **extra.get(target, {}))
            procs.append(proc)
            healthy(proc, health)
        connector = procs[-1].output()
        # the connector runs the mounted compose config (CA "certs/ca.pem" relative to the mount)
        assert f"https://127.0.0.1:{mapper.ports['5050']}" in connector
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{mapper.ports['8001']}/plugins", timeout=5) as r:
            assert b"wallarm-plugin" in r.read()
        with opener.open(f"http://127.0.0.1:{mapper.ports['8000']}/health", timeout=10) as r:
            assert json.loads(r.read())["service"] == "demo-api"  # proxied to the upstream image
        with pytest.raises(urllib.error.HTTPError) as blocked:  # the node image blocks the seed's attack
            opener.open(f"http://127.0.0.1:{mapper.ports['8000']}/etc/passwd", timeout=10)
        assert blocked.value.code == 403
        connector = procs[-1].output()
        assert "Only processing flows that match" not in connector
        assert "GET http://127.0.0.1" not in connector and "GET /health" not in connector
    finally:
        for p in reversed(procs):
            p.stop()
            p.log_path.unlink(missing_ok=True)
    for p in procs:  # SIGTERM (docker stop) ends each one
        assert p.proc.returncode is not None


def test_node_image_runs_from_environment_variables_alone(tmp_path: Path) -> None:
    """`docker run -e ...` of the node image with no mounted file: the TLS pair as PEM text, the
    mode, token, log format and SIEM stream as WALLARM_NODE_* variables."""
    from tests.support.node import NodeClient

    pems = tmp_path / "pems"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(pems)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = Mapper(tmp_path / "container")  # /etc/wallarm/certs maps to a folder that does not exist
    (tmp_path / "container" / "data").mkdir(parents=True)  # the image's volume
    assert not Path(m("/etc/wallarm/certs")).exists()
    token = "env-only-console-token-0123456789"
    proc, health = start("node", m, WALLARM_NODE_TLS_CERT_PEM=(pems / "node.pem").read_text(),
                         WALLARM_NODE_TLS_KEY_PEM=(pems / "node-key.pem").read_text(),
                         WALLARM_NODE_MODE="monitoring", WALLARM_NODE_CONSOLE_TOKEN=token,
                         WALLARM_NODE_LOG_FORMAT="json", WALLARM_NODE_EVENTS__FILE="-",
                         WALLARM_NODE_RETENTION__MAX_AGE_DAYS="7")
    try:
        healthy(proc, health)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(f"http://127.0.0.1:{m.ports['8090']}/api/v1/mode",
                                     headers={"Authorization": f"Bearer {token}"})
        with opener.open(req, timeout=5) as resp:
            assert json.loads(resp.read())["default"] == "monitoring"
        with NodeClient(f"https://127.0.0.1:{m.ports['5050']}/", verify=ssl.create_default_context(cafile=str(pems / "ca.pem"))) as client:
            status, verdict = client.request("GET", "/etc/passwd")
        assert status == 200 and verdict["action"] == "pass" and verdict["attacks"]  # monitoring: recorded, passed
        deadline = time.monotonic() + 10
        while '"type":"attack"' not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.stop()
    lines = [line for line in proc.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON: the logs and the event stream
    events = [p for p in parsed if p.get("type") == "attack"]
    assert len(events) == 1 and events[0]["path"] == "/etc/passwd" and events[0]["action"] == "monitored"
    assert any(p.get("msg", "").startswith("node ready") for p in parsed)
