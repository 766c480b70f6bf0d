"""Issue 15's "Done when": Kong's walkthrough, its `curl` lines verbatim, against the running system.

Real processes on free loopback ports: the node in block mode (TLS, as `make run`), the demo API
as the service's upstream, mitmdump with the connector in reverse mode; the ports of the
walkthrough (8000 proxy, 8001 admin, 9000 upstream) are substituted, nothing else in the lines.
The connector starts from an empty declarative file, as a new Kong does, and the seed's
`enable-plugin.json` (its node address pointed at this node) is the plugin body.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.metrics import value
from tests.support.node import NodeHandle, start_node
from tests.support.procs import REPO, ManagedProcess, free_port
from tests.support.proxy import Proxy, start_proxy

pytestmark = pytest.mark.e2e

# The walkthrough as Kong users know it (issue 15), verbatim.
WALKTHROUGH = """\
curl -s http://localhost:8001/ | jq .version
curl -i -X POST http://localhost:8001/services --data name=test-service --data url='http://127.0.0.1:9000'
curl -i -X POST http://localhost:8001/services/test-service/routes -H "Content-Type: application/json" -d '{"paths": ["/test"]}'
curl -i -X POST http://localhost:8001/services/test-service/plugins -H "Content-Type: application/json" -d "@enable-plugin.json"
curl -s http://localhost:8001/services/test-service/plugins | jq .
curl -i -X POST http://localhost:8001/plugins -H "Content-Type: application/json" -d "@enable-plugin.json"   # globally
curl -s http://localhost:8001/plugins | grep wallarm-plugin
curl -H "Host: test.com" http://localhost:8000/test/etc/passwd
""".splitlines()


@dataclass
class System:
    dir: Path
    node: NodeHandle
    upstream_port: int
    proxy: Proxy
    config: Path

    def line(self, template: str) -> str:
        return (template.replace("localhost:8001", f"localhost:{self.proxy.admin_port}")
                .replace("localhost:8000", f"localhost:{self.proxy.port}")
                .replace("127.0.0.1:9000", f"127.0.0.1:{self.upstream_port}"))

    def run(self, template: str, with_status: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a walkthrough line in a shell. `with_status`: curl also prints the status code on a
        last line, through a curlrc (so the line itself stays verbatim)."""
        command = self.line(template)
        if shutil.which("jq") is None and "| jq" in command:  # parse with Python instead, same curl
            command = command.split("| jq", 1)[0] + "| python3 -m json.tool"
        env = dict(os.environ)
        if with_status:
            rc = self.dir / "curlrc-status"
            rc.mkdir(exist_ok=True)
            (rc / ".curlrc").write_text('write-out = "\\n%{http_code}"\n')
            env["CURL_HOME"] = str(rc)
        return subprocess.run(command, shell=True, cwd=self.dir, capture_output=True, text=True, timeout=30, env=env)

    def metric(self, name: str) -> float:
        return value(httpx.get(self.proxy.admin + "/metrics").text, name)


def status_of(out: str) -> int:  # `curl -i` output, newlines already universal (text mode)
    return int(out.split("\n", 1)[0].split()[1])


def body_of(out: str) -> dict:
    return json.loads(out.split("\n\n", 1)[1])


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[System]:
    d = tmp_path_factory.mktemp("walkthrough")
    (d / "certs").mkdir()
    shutil.copy(certs / "ca.pem", d / "certs" / "ca.pem")
    node = start_node(d / "node", mode="block", tls=(certs / "node.pem", certs / "node-key.pem"))
    up_port = free_port()
    upstream = ManagedProcess("demo-upstream", [sys.executable, str(REPO / "scripts" / "demo_upstream.py"),
                                                "--listen", f"127.0.0.1:{up_port}"])
    proxy = None
    try:
        upstream.wait_http(f"http://127.0.0.1:{up_port}/health")
        seed = json.loads((REPO / "enable-plugin.json").read_text())
        seed["config"]["wallarm_node_address"] = node.endpoint_url.rstrip("/")
        (d / "enable-plugin.json").write_text(json.dumps(seed, indent=2))
        config = d / "kong.json"
        config.write_text('{"_format_version": "3.0"}\n')  # a new Kong: nothing configured
        # the reverse target is a placeholder (routes decide); the working directory is where the
        # walkthrough runs, so the seed's relative node_ca_file means what it means under `make run`
        proxy = start_proxy("http://127.0.0.1:1", config, cwd=d)
        yield System(d, node, up_port, proxy, config)
    finally:
        if proxy is not None:
            proxy.stop()
        upstream.stop()
        node.stop()


def test_kong_walkthrough_verbatim(system: System) -> None:
    s = system
    version = s.run(WALKTHROUGH[0])
    assert version.returncode == 0 and json.loads(version.stdout)  # "0.x.y": a JSON string
    created = s.run(WALKTHROUGH[1])
    assert status_of(created.stdout) == 201, created.stdout
    service = body_of(created.stdout)
    assert service["name"] == "test-service" and service["port"] == s.upstream_port
    route = s.run(WALKTHROUGH[2])
    assert status_of(route.stdout) == 201, route.stdout
    assert body_of(route.stdout)["service"] == {"id": service["id"]}
    scoped = s.run(WALKTHROUGH[3])
    assert status_of(scoped.stdout) == 201, scoped.stdout
    plugin = body_of(scoped.stdout)
    assert plugin["service"] == {"id": service["id"]} and plugin["config"]["blocking"] is True
    listed = json.loads(s.run(WALKTHROUGH[4]).stdout)
    assert [p["id"] for p in listed["data"]] == [plugin["id"]] and listed["next"] is None
    global_ = s.run(WALKTHROUGH[5])
    assert status_of(global_.stdout) == 201, global_.stdout
    assert body_of(global_.stdout)["service"] is None
    grep = s.run(WALKTHROUGH[6])
    assert grep.returncode == 0 and "wallarm-plugin" in grep.stdout
    # the file holds it all, in Kong's declarative shape
    doc = json.loads(s.config.read_text())
    assert doc["services"][0]["routes"][0]["paths"] == ["/test"] and len(doc["plugins"]) == 1

    attack = s.run(WALKTHROUGH[7], with_status=True)
    assert attack.stdout.rsplit("\n", 1)[-1] == "403", attack
    assert attack_listed(s.node, "/test/etc/passwd")
    benign = s.run('curl -s -H "Host: test.com" http://localhost:8000/test/health')
    assert json.loads(benign.stdout)["status"] == "ok"  # the demo API's /health, path stripped


def test_excluded_path_passes_and_is_counted(system: System) -> None:
    s = system
    plugins = httpx.get(f"{s.proxy.admin}/services/test-service/plugins").json()["data"]
    assert plugins, "runs after the walkthrough"
    r = httpx.patch(f"{s.proxy.admin}/plugins/{plugins[0]['id']}", data={"config.exclude": "~u /test/static/"})
    assert r.status_code == 200 and r.json()["config"]["exclude"] == "~u /test/static/"
    before = s.metric("wallarm_connector_requests_excluded_total")
    code = s.run("curl -s -o /dev/null -w '%{http_code}' -H \"Host: test.com\" "
                 "http://localhost:8000/test/static/etc/passwd").stdout
    assert code == "404"  # the demo API's answer: the attack passed, uninspected
    assert s.metric("wallarm_connector_requests_excluded_total") == before + 1
    assert s.run('curl -s -o /dev/null -w "%{http_code}" http://localhost:8000/test/etc/passwd').stdout == "403"


def test_no_route_is_kongs_404(system: System) -> None:
    r = httpx.get(system.proxy.url + "/elsewhere")
    assert r.status_code == 404 and r.json() == {"message": "no Route matched with those values"}


def test_concurrent_admin_writes_keep_every_update_and_the_file_whole(system: System) -> None:
    s = system
    stop = time.monotonic() + 30
    torn: list[str] = []
    reads = 0

    async def poll_file() -> None:
        nonlocal reads
        import asyncio
        while time.monotonic() < stop:
            text = s.config.read_text()
            try:
                json.loads(text)
            except ValueError:
                torn.append(text)
            reads += 1
            await asyncio.sleep(0)

    async def main() -> list[int]:
        import asyncio
        poller = asyncio.create_task(poll_file())
        async with httpx.AsyncClient(timeout=30) as c:
            answers = await asyncio.gather(*(c.post(f"{s.proxy.admin}/services",
                                                    data={"name": f"par-{i}", "url": f"http://127.0.0.1:{7000 + i}"})
                                             for i in range(20)))
        await asyncio.sleep(0.05)
        poller.cancel()
        return [a.status_code for a in answers]

    import asyncio
    codes = asyncio.run(main())
    assert codes == [201] * 20
    assert not torn and reads > 0
    names = {x["name"] for x in json.loads(s.config.read_text())["services"]}
    assert {f"par-{i}" for i in range(20)} <= names
    listed = {x["name"] for x in httpx.get(f"{s.proxy.admin}/services").json()["data"]}
    assert {f"par-{i}" for i in range(20)} <= listed  # GET reflects every write at once
    for i in range(20):
        assert httpx.delete(f"{s.proxy.admin}/services/par-{i}").status_code == 204


def test_bad_write_leaves_file_and_running_config_untouched(system: System) -> None:
    s = system
    before = s.config.read_bytes()
    plugins_before = httpx.get(f"{s.proxy.admin}/plugins").json()
    r = httpx.post(f"{s.proxy.admin}/services/test-service/routes", json={"paths": ["no-slash"]})
    assert r.status_code == 400 and r.json()["name"] == "schema violation" and "paths" in r.json()["fields"]
    r = httpx.patch(f"{s.proxy.admin}/plugins/{plugins_before['data'][0]['id']}",
                    json={"config": {"wallarm_node_address": "http://10.0.0.1:1"}})
    assert r.status_code == 400 and "wallarm_node_address" in r.json()["fields"]["config"]
    assert s.config.read_bytes() == before
    after = httpx.get(f"{s.proxy.admin}/plugins").json()
    assert [p["config"] for p in after["data"]] == [p["config"] for p in plugins_before["data"]]
    code = s.run('curl -s -o /dev/null -w "%{http_code}" http://localhost:8000/test/etc/passwd').stdout
    assert code == "403"  # still protected by the running config


def attack_listed(node: NodeHandle, path: str, timeout: float = 10.0) -> bool:
    """The node's console API lists a blocked attack on `path`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{node.console_url}/api/v1/attacks", params={"q": path, "limit": 50},
                      headers={"Authorization": f"Bearer {node.token}"})
        if r.status_code == 200 and any(i.get("path") == path and i.get("action") == "blocked"
                                        for i in r.json().get("items", [])):
            return True
        time.sleep(0.25)
    return False


def test_two_workers_sharing_the_file_lose_no_write(system: System) -> None:
    """A second mitmdump on the same declarative file: parallel writes to both are all kept (the
    lock and the re-read before each write), and each worker's GET shows the other's soon."""
    s = system
    second = start_proxy("http://127.0.0.1:1", s.config, name="mitmdump-2", cwd=s.dir)
    try:
        async def main() -> list[int]:
            import asyncio
            async with httpx.AsyncClient(timeout=30) as c:
                answers = await asyncio.gather(*(
                    c.post(f"{admin}/services", data={"name": f"w{n}-{i}", "url": f"http://127.0.0.1:{7100 + i}"})
                    for i in range(10) for n, admin in ((1, s.proxy.admin), (2, second.admin))))
            return [a.status_code for a in answers]

        import asyncio
        assert asyncio.run(main()) == [201] * 20
        expected = {f"w{n}-{i}" for n in (1, 2) for i in range(10)}
        assert expected <= {x["name"] for x in json.loads(s.config.read_text())["services"]}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen = [{x["name"] for x in httpx.get(f"{a}/services").json()["data"]} for a in (s.proxy.admin, second.admin)]
            if all(expected <= names for names in seen):
                break
            time.sleep(0.1)
        assert all(expected <= names for names in seen)
    finally:
        second.stop()
    for name in sorted(expected):
        assert httpx.delete(f"{s.proxy.admin}/services/{name}").status_code == 204
