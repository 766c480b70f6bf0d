"""Signature data files -> one compiled hyperscan database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import hyperscan
import yaml

log = logging.getLogger(__name__)

KNOWN_TYPES = frozenset(
    "sqli xss ptrav rce ssti nosqli ldapi crlf xxe ssrf log4shell ssi mail_injection "
    "shellshock scanner infoleak".split()
)
KNOWN_DETECTORS = frozenset({"sqli", "shell", "log4j"})
_FLAGS = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_MULTILINE


class SignatureError(ValueError):
    """A signature file that cannot be used; the message names the file and rule."""


@dataclass(frozen=True, slots=True)
class Signature:
    id: str
    type: str
    score: int
    pattern: str
    detector: str | None = None
    kinds: frozenset[str] | None = None
    not_kinds: frozenset[str] = frozenset()
    locations: frozenset[str] | None = None

    def applies_to(self, kind: str, location: str) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        if kind in self.not_kinds:
            return False
        if self.locations is not None and location not in self.locations:
            return False
        return True


def _opt_set(value: object, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SignatureError(f"{where}: expected a list of strings")
    return frozenset(value)


def parse_signatures(docs: object, source: str) -> list[Signature]:
    if not isinstance(docs, list):
        raise SignatureError(f"{source}: expected a list of signatures")
    out: list[Signature] = []
    for i, d in enumerate(docs):
        where = f"{source}[{i}]"
        if not isinstance(d, dict):
            raise SignatureError(f"{where}: expected a mapping")
        try:
            sig = Signature(
                id=str(d["id"]),
                type=str(d["type"]),
                score=int(d["score"]),
                pattern=str(d["pattern"]),
                detector=d.get("detector"),
                kinds=_opt_set(d.get("kinds"), where),
                not_kinds=_opt_set(d.get("not_kinds"), where) or frozenset(),
                locations=_opt_set(d.get("locations"), where),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SignatureError(f"{where}: {e!r}") from e
        if sig.type not in KNOWN_TYPES:
            raise SignatureError(f"{where} ({sig.id}): unknown type {sig.type!r}")
        if sig.detector is not None and sig.detector not in KNOWN_DETECTORS:
            raise SignatureError(f"{where} ({sig.id}): unknown detector {sig.detector!r}")
        out.append(sig)
    ids = [s.id for s in out]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise SignatureError(f"{source}: duplicate ids {sorted(dup)}")
    return out


def load_signatures(name: str) -> list[Signature]:
    """Load `node/detect/signatures/<name>` (package data)."""
    text = resources.files("node.detect").joinpath("signatures", name).read_text("utf-8")
    return parse_signatures(yaml.safe_load(text), name)


class SignatureSet:
    """Signatures compiled into one hyperscan block-mode database."""

    def __init__(self, signatures: list[Signature]) -> None:
        self.signatures = signatures
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            self.db.compile(
                expressions=[s.pattern.encode() for s in signatures],
                ids=list(range(len(signatures))),
                elements=len(signatures),
                flags=[_FLAGS] * len(signatures),
            )
        except hyperscan.error as e:
            # find the culprit so the message names it
            for s in signatures:
                try:
                    hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK).compile(expressions=[s.pattern.encode()], flags=[_FLAGS])
                except hyperscan.error as e2:
                    raise SignatureError(f"signature {s.id}: {e2}") from e2
            raise SignatureError(str(e)) from e
        self.scratch = hyperscan.Scratch(self.db)
        self.db.scratch = self.scratch

    def scan(self, data: bytes) -> set[int]:
        """Indexes of the signatures that match `data`."""
        hits: set[int] = set()

        def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> bool | None:
            hits.add(idx)
            return None

        self.db.scan(data, match_event_handler=on_match)
        return hits
