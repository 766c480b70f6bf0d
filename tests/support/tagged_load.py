"""A load client that accounts for every single request: c keep-alive connections for a bounded time.

wrk and scripts/loadgen.py count answers; the fault matrix must know what each request got. So
every request carries a unique tag (`X-Test-Seq: <prefix>-<n>`, the upstream counts the tags it
receives) and a path the upstream answers with a deterministic body (`upstream_body(path)`):
the client hashes what it got against the hash of what the upstream sends for that path. Every
`attack_every`-th request carries an SQL injection, so a working node blocks some of them.

Each request ends in exactly one outcome:
  upstream     200, the upstream's marker header, body hash equal to the upstream's
  blocked      the connector's block answer (block status, request id header, block page)
  bad_gateway  mitmproxy's own 502 (the upstream could not be reached)
  altered      a 200 whose body or marker differs from the upstream's
  other        any other answer (e.g. a 503 refusal)
  closed       the connection ended (FIN or RST) before a whole answer head
  error        no answer: another connection error or a timeout (the request may be lost)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.support.proxy import TAG_HEADER, upstream_body

OUTCOMES = ("upstream", "blocked", "bad_gateway", "altered", "other", "closed", "error")
ATTACK_QUERY = "?id=1%27%20OR%20%271%27%3D%271"  # ' OR '1'='1: the real and the fake node both block it
BLOCK_PAGE_MARK = b"blocked by the API security policy"
ANSWER_TIMEOUT_S = 15.0  # longer than any node timeout: a request still waiting after this is lost


@dataclass
class LoadTally:
    prefix: str
    outcomes: Counter[str] = field(default_factory=Counter)
    upstream_tags: set[str] = field(default_factory=set)  # tags the client got the upstream's answer for
    problems: list[str] = field(default_factory=list)  # the first few non-upstream/non-block outcomes
    seconds: float = 0.0
    proxy_connect_errors: int = 0
    failed_at: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, outcome) of each failure
    _next: int = 0

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def next_request(self, attack_every: int) -> tuple[str, str]:
        n = self._next
        self._next += 1
        path = f"/fm/{self.prefix}/{n}" + (ATTACK_QUERY if attack_every and n % attack_every == 0 else "")
        return f"{self.prefix}-{n}", path

    def record(self, tag: str, outcome: str, detail: str) -> None:
        assert outcome in OUTCOMES, outcome
        self.outcomes[outcome] += 1
        if outcome not in ("upstream", "blocked"):
            self.failed_at.append((time.monotonic(), outcome))
        if outcome == "upstream":
            self.upstream_tags.add(tag)
        elif outcome not in ("blocked", "bad_gateway", "closed") and len(self.problems) < 20:
            self.problems.append(f"{tag}: {outcome}: {detail}")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    reusable: bool


class HeadNotReceived(Exception):
    """The connection ended before a whole answer head arrived."""


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionResetError) as e:
        raise HeadNotReceived() from e
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            parts.append((await reader.readexactly(size + 2))[:size])
            if size == 0:
                break
        body = b"".join(parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        reusable = False
    return Answer(int(status), headers, body, reusable)


def classify(answer: Answer, path: str, block_status: int) -> tuple[str, str]:
    """(outcome, detail) of one answer to a request for `path`."""
    if answer.status == 200:
        want = hashlib.sha256(upstream_body(path)).hexdigest()
        got = hashlib.sha256(answer.body).hexdigest()
        if answer.headers.get("x-upstream") == "yes" and got == want:
            return "upstream", ""
        return "altered", f"sha256 {got[:12]} != {want[:12]} ({len(answer.body)} bytes)"
    if (answer.status == block_status and "x-wallarm-request-id" in answer.headers
            and BLOCK_PAGE_MARK in answer.body):
        return "blocked", ""
    if answer.status == 502 and "x-upstream" not in answer.headers:
        return "bad_gateway", ""
    return "other", f"HTTP {answer.status}: {answer.body[:120]!r}"


async def _connection(host: str, port: int, tally: LoadTally, deadline: float, attack_every: int,
                      block_status: int) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        while time.monotonic() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError as e:
                    # Not a request yet: nothing was sent, nothing lost; but the proxy must stay
                    # reachable, so it is counted and the matrix requires zero.
                    tally.proxy_connect_errors += 1
                    tally.failed_at.append((time.monotonic(), "proxy_connect"))
                    if len(tally.problems) < 20:
                        tally.problems.append(f"connect to the proxy failed: {e}")
                    await asyncio.sleep(0.05)
                    continue
            tag, path = tally.next_request(attack_every)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{TAG_HEADER}: {tag}\r\n"
                         f"Accept: */*\r\n\r\n".encode())
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    answer = await read_answer(reader)
            except HeadNotReceived as e:
                # Ended (FIN or RST) before an answer head: mitmproxy does this when it cannot
                # open the upstream connection eagerly.
                tally.record(tag, "closed", repr(e.__cause__))
                writer.close()
                writer = None
                continue
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                tally.record(tag, "error", repr(e))
                writer.close()
                writer = None
                continue
            tally.record(tag, *classify(answer, path, block_status))
            if not answer.reusable:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def run_tagged_load(host: str, port: int, prefix: str, connections: int, duration_s: float,
                          attack_every: int = 5, block_status: int = 403) -> LoadTally:
    """Drive `connections` keep-alive connections for `duration_s`; every request accounted for."""
    tally = LoadTally(prefix)
    started = time.monotonic()
    deadline = started + duration_s
    await asyncio.gather(*(_connection(host, port, tally, deadline, attack_every, block_status)
                           for _ in range(connections)))
    tally.seconds = time.monotonic() - started
    return tally
