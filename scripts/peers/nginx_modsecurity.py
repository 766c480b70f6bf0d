"""nginx + ModSecurity v3 + OWASP CRS as a reverse proxy: the field's in-line WAF, for the
throughput comparison of scripts/bench_workers.py (`bench_proxy.py --workers N`).

Debian's nginx with its ModSecurity connector module (libnginx-mod-http-modsecurity) and the
same rules, in the same order and with the same engine settings, as the in-process peer of
scripts/peers/modsecurity.py (`rule_sources`): CRS 3.3 at paranoia level 1, anomaly threshold 5,
request bodies inspected, no audit log. nginx runs in the foreground (`daemon off`) from a
private prefix directory, `worker_processes` as asked, proxying with keep-alive to the upstream.

    with NginxModSecurity(upstream_port=9000, workers=2) as peer:
        ... load http://127.0.0.1:{peer.port}/ ...
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "scripts"):  # run from scripts/ (the benchmarks) or the repo root (tests)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from peers.modsecurity import find_crs, rule_sources  # noqa: E402
from tests.support.procs import ManagedProcess, free_port  # noqa: E402

DEBIAN_PACKAGES = "nginx libnginx-mod-http-modsecurity modsecurity-crs"
MODULE_CANDIDATES = (Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"),
                     Path("/usr/lib64/nginx/modules/ngx_http_modsecurity_module.so"))
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxUnavailable(RuntimeError):
    """nginx or its ModSecurity module is not installed."""


def find_nginx() -> tuple[str, Path]:
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if Path(p).exists()), None)
    module = next((p for p in MODULE_CANDIDATES if p.is_file()), None)
    if nginx is None or module is None:
        raise NginxUnavailable(f"nginx with the ModSecurity module not found; apt-get install {DEBIAN_PACKAGES}")
    return nginx, module


def modsecurity_rules(paranoia: int) -> str:
    """One rules file for nginx's `modsecurity_rules_file`: texts inline, files by Include."""
    parts = []
    for source in rule_sources(find_crs(), paranoia):
        parts.append(f"Include {source}" if isinstance(source, Path) else source.strip())
    return "\n".join(parts) + "\n"


def nginx_conf(prefix: Path, module: Path, listen_port: int, upstream_port: int, workers: int) -> str:
    temp = "\n".join(f"    {name}_temp_path {prefix / 'tmp' / name};" for name in TEMP_DIRS)
    return f"""# scripts/peers/nginx_modsecurity.py: nginx + ModSecurity + CRS in front of one upstream
load_module {module};
worker_processes {workers};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    upstream app {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{listen_port} reuseport;
        modsecurity on;
        modsecurity_rules_file {prefix / 'modsecurity.conf'};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


class NginxModSecurity:
    """nginx on a free loopback port with `workers` worker processes; stopped on exit."""

    def __init__(self, upstream_port: int, workers: int = 1, paranoia: int = 1):
        self.nginx, self.module = find_nginx()
        self.upstream_port = upstream_port
        self.workers = workers
        self.paranoia = paranoia
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="nginx-modsec-")
        self.prefix = Path(self._dir.name)
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_url_path: str = "/health", timeout: float = 60.0) -> None:
        # Started as root, nginx's workers run as nobody: they must reach the temp directories.
        os.chmod(self.prefix, 0o755)
        for name in TEMP_DIRS:
            d = self.prefix / "tmp" / name
            d.mkdir(parents=True)
            os.chmod(d, 0o777)
        os.chmod(self.prefix / "tmp", 0o755)
        (self.prefix / "modsecurity.conf").write_text(modsecurity_rules(self.paranoia))
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_conf(self.prefix, self.module, self.port, self.upstream_port, self.workers))
        self.proc = ManagedProcess(f"nginx-modsec-w{self.workers}",
                                   [self.nginx, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"])
        try:
            self.proc.wait_http(self.url + ready_url_path, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        if self.proc is None:
            return []
        master = self.proc.proc.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        return [master] + [int(p) for p in children.read_text().split()] if children.exists() else [master]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc.log_path.unlink(missing_ok=True)
            self.proc = None
        self._dir.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
