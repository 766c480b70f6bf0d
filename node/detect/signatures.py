"""Signature data files -> one compiled hyperscan database."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import hyperscan
import yaml

from node.detect.literals import record_hit

log = logging.getLogger(__name__)

KNOWN_TYPES = frozenset(
    "sqli xss ptrav rce ssti nosqli ldapi crlf xxe ssrf log4shell ssi mail_injection "
    "shellshock scanner infoleak proto_pollution".split()
)
KNOWN_DETECTORS = frozenset({"sqli", "shell", "log4j", "ptrav", "ssrf", "nosqli", "ldapi", "xxe", "xss", "ssti"})
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


CACHE_ENV = "WALLARM_NODE_CACHE_DIR"
_CACHE_MAGIC = b"wallarm-hs-cache-1\n"


def cache_dir() -> Path:
    """Where compiled databases are kept: $WALLARM_NODE_CACHE_DIR, else the XDG cache dir."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wallarm-node"


def _cache_key(signatures: list[Signature]) -> str:
    # everything that changes the compiled bytes: patterns, their order, flags, the library
    h = hashlib.sha256()
    h.update(f"hyperscan={getattr(hyperscan, '__version__', '?')};flags={_FLAGS};mode={hyperscan.HS_MODE_BLOCK}".encode())
    for s in signatures:
        h.update(b"\0" + s.pattern.encode())
    return h.hexdigest()[:32]


def _load_cached(path: Path) -> hyperscan.Database | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("signature cache %s unreadable (%s); compiling", path, e)
        return None
    payload = data[len(_CACHE_MAGIC) + 32 :]
    # a checksum first: hyperscan is C code and is not asked to deserialize damaged bytes
    if not data.startswith(_CACHE_MAGIC) or hashlib.sha256(payload).digest() != data[len(_CACHE_MAGIC) : len(_CACHE_MAGIC) + 32]:
        log.warning("signature cache %s is corrupt; compiling and rewriting it", path)
        return None
    try:
        return hyperscan.loadb(payload, hyperscan.HS_MODE_BLOCK)
    except Exception as e:  # corrupt, truncated or from another hyperscan build: recompile
        log.warning("signature cache %s unusable (%s); compiling and rewriting it", path, e)
        return None


def _store_cached(path: Path, db: hyperscan.Database) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            payload = hyperscan.dumpb(db)
            with os.fdopen(fd, "wb") as f:
                f.write(_CACHE_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except Exception as e:  # read-only home, full disk...: the cache is only an optimisation
        log.warning("cannot write signature cache %s (%s)", path, e)


class SignatureSet:
    """Signatures compiled into one hyperscan block-mode database.

    The compiled database is cached on disk (see `cache_dir`), keyed by a hash of the patterns
    and the hyperscan version: compiling takes seconds, loading a cached one milliseconds."""

    def __init__(self, signatures: list[Signature], use_cache: bool = True) -> None:
        self.signatures = signatures
        path = cache_dir() / f"hs-{_cache_key(signatures)}.db" if use_cache else None
        db = _load_cached(path) if path else None
        self.from_cache = db is not None
        if db is None:
            db = self._compile(signatures)
            if path:
                _store_cached(path, db)
        self.db = db
        self.scratch = hyperscan.Scratch(self.db)
        self.db.scratch = self.scratch

    @staticmethod
    def _compile(signatures: list[Signature]) -> hyperscan.Database:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            db.compile(
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
        return db

    def scan(self, data: bytes) -> set[int]:
        """Indexes of the signatures that match `data`."""
        hits: set[int] = set()
        # (no closure made per scan; positional arguments: keywords cost 0.3 us a call, a third
        # of what the scan of a 1 KB window costs)
        self.db.scan(data, record_hit, 0, hits)
        return hits
