#!/usr/bin/env python3
"""HAProxy's config for several mitmdump workers, rendered from docker/haproxy.cfg.template.

Two renderings of the one template:
  * `make run WORKERS=N` (scripts/run_system.py): each worker on its own loopback proxy and
    status ports, listed server by server;
  * docker-compose.yml (`python scripts/haproxy_config.py --compose > docker/haproxy.cfg`): the
    `worker` service's replicas found through Docker's DNS (`server-template`), so
    `docker compose up --scale worker=N` needs no new config.

The Admin API frontend asks for the token (Kong-Admin-Token, compared with HAProxy's environment
variable WALLARM_ADMIN_TOKEN, so the secret is never written to the file) when it listens off
loopback: behind HAProxy every request reaches a worker from loopback, so the worker's own rule
("loopback peers need no token") would let everyone in.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "docker" / "haproxy.cfg.template"
COMPOSE_CONFIG = REPO / "docker" / "haproxy.cfg"
COMPOSE_MAX_WORKERS = 8  # server-template slots: `docker compose up --scale worker=N` up to this
TOKEN_ENV = "WALLARM_ADMIN_TOKEN"
OPEN_PATHS = ("/status", "/metrics")  # as the connector's own Admin API: no token needed


@dataclass(frozen=True)
class Worker:
    name: str
    host: str
    proxy_port: int
    status_port: int


@dataclass(frozen=True)
class Checks:
    """Health-check timing: `inter` while up, `fastinter` after a layer-4 error or while
    changing state, `downinter` while down. `fall 2` marks a worker down after two failed checks."""

    inter: str = "1s"
    fastinter: str = "250ms"
    downinter: str = "1s"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def admin_rules(token_required: bool) -> str:
    """Requests to the Admin API that HAProxy refuses itself (401, as the connector would)."""
    if not token_required:
        return "    # on loopback, as the connector's own listener: no token"
    return "\n".join([
        "    # off loopback: the token for everything but " + " and ".join(OPEN_PATHS),
        f"    acl open_path path {' '.join(OPEN_PATHS)}",
        f"    acl token_configured env({TOKEN_ENV}) -m len gt 0",
        f'    acl token_given req.hdr(Kong-Admin-Token) -m str "${{{TOKEN_ENV}}}"',
        "    http-request deny deny_status 401 unless open_path || token_configured token_given",
    ])


def _fill(proxy_bind: str, admin_bind: str, stats_bind: str, token_required: bool, checks: Checks,
          worker_servers: list[str], alive_servers: list[str], admin_servers: list[str], resolvers: str = "") -> str:
    return Template(TEMPLATE.read_text()).substitute(
        proxy_bind=proxy_bind, admin_bind=admin_bind, stats_bind=stats_bind, resolvers=resolvers,
        admin_rules=admin_rules(token_required), check_inter=checks.inter, check_fastinter=checks.fastinter,
        check_downinter=checks.downinter, worker_servers="\n".join(worker_servers),
        alive_servers="\n".join(alive_servers), admin_servers="\n".join(admin_servers))


def render(proxy_bind: str, admin_bind: str, stats_bind: str, workers: list[Worker], token_required: bool,
           checks: Checks = Checks()) -> str:
    """The config for workers with known addresses (`make run WORKERS=N`)."""
    if not workers:
        raise ValueError("at least one worker")
    return _fill(proxy_bind, admin_bind, stats_bind, token_required, checks,
                 [f"    server {w.name} {_hostport(w.host, w.proxy_port)} check port {w.status_port}" for w in workers],
                 [f"    server {w.name} {_hostport(w.host, w.proxy_port)} check port {w.status_port}" for w in workers],
                 [f"    server {w.name} {_hostport(w.host, w.status_port)} check" for w in workers])


def render_compose(service: str = "worker", max_workers: int = COMPOSE_MAX_WORKERS) -> str:
    """The config for docker-compose.yml: the service's replicas through Docker's DNS."""
    slots = f"1-{max_workers}"
    found = "resolvers docker init-addr none"
    resolvers = "\n".join(["", "resolvers docker", "    nameserver dns 127.0.0.11:53", "    hold valid 2s",
                           "    hold obsolete 2s"])
    return _fill("0.0.0.0:8000", "0.0.0.0:8001", "0.0.0.0:8404", True, Checks(),
                 [f"    server-template w {slots} {service}:8000 check port 8001 {found}"],
                 [f"    server-template w {slots} {service}:8000 check port 8001 {found}"],
                 [f"    server-template w {slots} {service}:8001 check {found}"], resolvers)


def server_states(stats_url: str, backend: str) -> dict[str, str]:
    """Each server of `backend` and its status (UP, DOWN, "UP 1/2", ...) from HAProxy's stats CSV."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(stats_url + "/;csv", timeout=2) as r:
        rows = r.read().decode().splitlines()
    header = rows[0].lstrip("# ").split(",")
    px, sv, status = header.index("pxname"), header.index("svname"), header.index("status")
    return {f[sv]: f[status] for f in (row.split(",") for row in rows[1:])
            if f[px] == backend and f[sv] not in ("FRONTEND", "BACKEND")}


def haproxy_up(stats_url: str, backend: str) -> int:
    """How many servers of `backend` are UP."""
    return sum(1 for st in server_states(stats_url, backend).values() if st.startswith("UP"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compose", action="store_true", required=True,
                    help="print the docker-compose rendering (docker/haproxy.cfg)")
    ap.parse_args(argv)
    sys.stdout.write(render_compose())
    return 0


if __name__ == "__main__":
    sys.exit(main())
