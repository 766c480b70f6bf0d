#!/usr/bin/env python3
"""Replay the labelled corpus through the whole system: real node + real mitmdump + addon.

Starts, on free loopback ports, in a temporary directory that is removed afterwards:
  1. the node: `python -m node --listen 127.0.0.1:P --console-listen 127.0.0.1:Q --db TMP/node.db
     --mode block` (plain HTTP endpoint: allowed on loopback);
  2. mitmdump in reverse mode with the addon (in-line: `blocking: true`), pointing at the node,
     in front of an upstream on a free port that replay.py itself serves (`--serve-upstream`);
  3. `../shared/tools/replay.py CORPUS... --target 127.0.0.1:PROXY --serve-upstream
     127.0.0.1:UP --concurrency N`, whose table is printed as it comes.
Then stops everything it started (proxy first, node last) and exits with replay.py's status.

The connector's `timeout_ms` is raised (default 5000) so that a loaded machine does not fail open
and count a slow verdict as "passed". Bounded: replay.py runs at most --max-seconds.

  python scripts/replay_system.py [--sample 20000] [--concurrency 8] [--timeout-ms 5000]
        [--corpus ../shared/corpus/mgm.jsonl.gz ../shared/corpus/blazehttp.jsonl.gz]
        [--json out.json] [--show-misses N] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support.procs: the same process handling the e2e tests use

from tests.support.procs import MITMDUMP, ManagedProcess, free_port  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_CORPUS = [SHARED / "corpus" / "mgm.jsonl.gz", SHARED / "corpus" / "blazehttp.jsonl.gz"]
REPLAY_TOOL = SHARED / "tools" / "replay.py"
log = logging.getLogger("replay_system")


def write_plugin_config(path: Path, node_url: str, timeout_ms: int) -> None:
    cfg = {
        "name": "wallarm-plugin",
        "instance_name": "replay-system",
        "protocols": ["http", "https"],
        "enabled": True,
        "config": {
            "blocking": True,  # in-line: the node's verdict decides before the upstream sees it
            "wallarm_node_address": node_url,
            "timeout_ms": timeout_ms,
            # the whole body is judged; the corpus has bodies up to a few hundred KB
            "max_body_bytes": 4 * 1024 * 1024,
            "inspect_response": False,  # the replay upstream answers "ok": nothing to inspect
        },
    }
    path.write_text(json.dumps(cfg, indent=2), "utf-8")


def start_node(work: Path) -> tuple[ManagedProcess, str, str]:
    port, console = free_port(), free_port()
    cmd = [sys.executable, "-m", "node", "--listen", f"127.0.0.1:{port}", "--console-listen",
           f"127.0.0.1:{console}", "--db", str(work / "node.db"), "--mode", "block"]
    proc = ManagedProcess("node", cmd, env={"WALLARM_CONSOLE_TOKEN": "replay-system"})
    proc.wait_http(f"http://127.0.0.1:{console}/ready", timeout=60)
    return proc, f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{console}"


def start_proxy(config: Path, upstream_port: int, admin_port: int | None = None) -> tuple[ManagedProcess, int]:
    """mitmdump in front of the upstream; its status listener (/metrics) on `admin_port`."""
    cmd = [MITMDUMP, "--mode", f"reverse:http://127.0.0.1:{upstream_port}@127.0.0.1:0",
           "-s", str(REPO / "addon" / "wallarm.py"), "--set", f"wallarm_config={config}",
           "--set", f"wallarm_admin_listen=127.0.0.1:{admin_port or free_port()}", "--set", "flow_detail=0"]
    proc = ManagedProcess("mitmdump", cmd)
    m = proc.wait_for_log(r"listening at 127\.0\.0\.1:(\d+)", timeout=60)
    return proc, int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--sample", type=int, help="replay a stratified sample of N records (default: all)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--timeout-ms", type=int, default=5000, help="connector timeout_ms (default 5000)")
    ap.add_argument("--max-seconds", type=int, default=1800, help="stop the replay after this long")
    ap.add_argument("--json", type=Path, help="replay.py's summary rows")
    ap.add_argument("--show-misses", type=int, default=0)
    ap.add_argument("--keep-logs", type=Path, help="copy the node and proxy logs here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    for p in [*args.corpus, REPLAY_TOOL]:
        if not p.is_file():
            log.error("%s: not found", p)
            return 2
    work = Path(tempfile.mkdtemp(prefix="replay-system-"))
    procs: list[ManagedProcess] = []
    rc = 1
    try:
        t0 = time.monotonic()
        node, node_url, console_url = start_node(work)
        procs.append(node)
        log.info("node ready in %.1f s: endpoint %s, console %s", time.monotonic() - t0, node_url, console_url)
        config = work / "enable-plugin.json"
        write_plugin_config(config, node_url, args.timeout_ms)
        upstream_port = free_port()
        proxy, proxy_port = start_proxy(config, upstream_port)
        procs.append(proxy)
        log.info("mitmdump on 127.0.0.1:%d -> upstream 127.0.0.1:%d (served by replay.py)", proxy_port, upstream_port)
        cmd = [sys.executable, str(REPLAY_TOOL), *map(str, args.corpus), "--target", f"127.0.0.1:{proxy_port}",
               "--serve-upstream", f"127.0.0.1:{upstream_port}", "--concurrency", str(args.concurrency)]
        if args.sample:
            cmd += ["--sample", str(args.sample)]
        if args.json:
            cmd += ["--json", str(args.json)]
        if args.show_misses:
            cmd += ["--show-misses", str(args.show_misses)]
        log.info("running: %s", " ".join(cmd))
        t1 = time.monotonic()
        try:
            rc = subprocess.run(cmd, timeout=args.max_seconds).returncode
        except subprocess.TimeoutExpired:
            log.error("replay did not finish within %d s; stopped", args.max_seconds)
            rc = 3
        log.info("replay took %.0f s", time.monotonic() - t1)
        out = proxy.output()
        # a request without a verdict went upstream (fail-open): it would count as "passed"
        log.info("connector: %d request(s) blocked, %d without a node verdict (fail-open)",
                 out.count("] blocked "), out.count("] no verdict for ") + out.count("circuit breaker open"))
    except Exception:
        log.exception("system replay failed")
        rc = rc or 1
    finally:
        stop_all(procs, args.keep_logs, work)
    return rc


def stop_all(procs: list[ManagedProcess], keep_logs: Path | None, work: Path) -> None:
    """Stop the proxy first, then the node (so it flushes its store); keep their logs if asked."""
    for p in reversed(procs):
        p.stop()
    if keep_logs:
        keep_logs.mkdir(parents=True, exist_ok=True)
        for p in procs:
            (keep_logs / f"{p.name}.log").write_text(p.output(), "utf-8")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
