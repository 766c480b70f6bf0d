"""The detection engine: parse, normalise, match, judge, score. See docs/detection.md.

Per request: the parser yields (location, value) fields; a value made only of harmless
characters is skipped; the rest are decoded into their variants, which one hyperscan scan
per value matches against all signatures at once. Signature hits either score directly or
call a structural detector (SQL, shell, Log4j) on that value, whole (each detector normalises
it and reads it in overlapping windows: node/detect/windows.py). Scores add up per value and attack type; the
request's score is the highest of those sums.

Every limit that ends inspection early (fields, body, depth, detector budget, CPU deadline...)
is recorded in Detection.partial; such a verdict is never cached.
"""

from __future__ import annotations

import functools
import gc
import gzip
import hashlib
import logging
import marshal
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import compress
from operator import itemgetter
from typing import Any

from wallarm_wire.protocol import AttackInfo, RequestMessage, ResponseMessage
from node.detect.decode import short_b64_text, upper_b64_text
from node.detect.findings import DEFAULT_THRESHOLD, Detection, excerpt
from node.detect.ldapi import detect_ldapi
from node.detect.log4j import detect_log4j
from node.detect.readings import Readings, readings
from node.detect.nosqli import detect_nosqli
from node.detect.ptrav import detect_ptrav
from node.detect.request import (MAX_BODY, FieldSink, body_headers, escapes_codec, inflate, parse_body, parse_header_line,
                                 parse_query_in_codec, parse_target)
from node.detect.shell import ALONE_COMMANDS, REQUEST_GLOB_WALKS, RequestGlobWalks, detect_shell
from node.detect.signatures import SignatureSet, load_signatures
from node.detect.sqli import detect_sqli
from node.detect.ssrf import detect_ssrf
from node.detect.ssti import detect_ssti
from node.detect.trivial import nontrivial_header_values, short_dismissed
from node.detect.xxe import detect_xxe
from node.detect.windows import normalise
from node.detect.xss import detect_xss

__all__ = ["Engine", "Detection"]

log = logging.getLogger(__name__)

MAX_RESPONSE_SCAN = 64 * 1024
# verdicts of recently seen values (User-Agent, Accept, cookies repeat across requests).
# Sizes: on the corpus's 16,678 benign requests, 16,384 units / values instead of 4,096 /
# 8,192 cut unit misses by 24% and judged values by 16%, for at most ~50 MB (keys of up to
# 2 KiB / 1 KiB), typically ~10 MB (docs/decisions.md, "Verdict cache sizes")
MAX_CACHE = 16384
MAX_CACHED_VALUE = 1024
# a longer value is kept under a digest of itself (_value_key): a beacon's message or a
# serialized state repeats whole across requests (137 of the benign corpus's 1,190 values over
# 1 KiB are such repeats, and judging one costs up to a millisecond), and its entry stays small
DIGEST_BYTES = 16
# verdicts of whole header lines and request targets (bytes/chars of the key)
MAX_UNIT_CACHE = 16384
MAX_CACHED_UNIT = 2048
# a young collection per this many cache evictions (see Engine._remember)
EVICTIONS_PER_COLLECTION = 1024
# structural detector runs (a value and a detector, all its windows) per request: this many,
# and one more per BYTES_PER_DETECTOR_CALL of target and body (a 500 KB JSON catalogue whose
# titles start with "sed" needs ~320: its values start a line in the pre-filter's view); past
# it a pre-filter hit only counts as a weak signal and the verdict is partial ("budget")
MAX_DETECTOR_CALLS = 32
BYTES_PER_DETECTOR_CALL = 256
# the work bound per request, in thread CPU time: DEADLINE_S, and DEADLINE_S_PER_MIB more per
# MiB of target and body (the detectors read a value whole). Past it the verdict is partial
# ("deadline"), a 403 in block mode, so the bound must clear the costliest benign bodies: an
# 857 KB JSON beacon of JSON inside JSON strings (blazehttp) takes 174-187 ms of CPU on a quiet
# machine (218 ms per MiB), where most hostile shapes stay under 80 ms per MiB
# (scripts/bench_hostile.py). It must also end well within the connector's default timeout_ms
# (500): a verdict that comes later is a pass. `many:judged-json-keys` (1 MiB of judged JSON
# keys) runs into the bound and answered in 384 ms on a busy machine (436-627 ms with 400 ms per
# MiB), so the beacon's 165-262 ms there stay close to its 265 ms (docs/detection.md, "Issue 14,
# seventeenth pass").
DEADLINE_S = 0.020
# a header line counts as this many bytes of target and body in the time bound: 50,000 lines
# (mitmproxy reads any number) get ~150 ms, where the trivial ones take a few microseconds
HEADER_LINE_COST = 16
DEADLINE_S_PER_MIB = 0.300  # 265 ms for that beacon
DEADLINE = (DEADLINE_S, DEADLINE_S_PER_MIB)  # Engine(deadline=...)'s default
_MIB = 1024 * 1024
# the time bound only cuts a request after this much was judged, and counts from there: a small
# request (most attacks) is always judged whole, even when a collector pause or a page fault ate
# its time budget
MIN_JUDGED_CHARS = 4 * 1024
# ... except a request this large: its clock starts with the request, so parsing it counts too.
# Parsing 1 MiB of distinct JSON keys (bench_hostile's many:judged-json-keys) took 280 ms on a
# busy machine before any value was judged, and the judging's own bound came on top of it: 550-700
# ms in all, past the connector's default timeout_ms (500), where a verdict is a pass
EARLY_CLOCK_BYTES = 64 * 1024
UNVERIFIED_SCORE = 5
# a detector's verdict on a value this short serves every pre-filter of that detector (no
# analyser window is narrower: the verdict did not depend on which signature gated it)
MEMO_CHARS = 1024
# window scans kept (Engine._gate): a detector called by two pre-filters, or on two readings
# that share windows, reads the same windows again
WINDOW_SCANS_KEPT = 64
# analysers' verdicts on whole texts kept (Engine._analysed): near-identical values differ in an
# id or a timestamp, and their readings hold the same pieces (a beacon's message carrying the
# same embedded JSON request after request: 3 of its 4 analysed texts are the previous one's)
ANALYSED_KEPT = 4096
# a text longer than this is kept under its digest (_digest)
ANALYSED_AS_IS = 256
# from this length on, _plain_token tests case by case mappings (a call more, far less per character)
LONG_VALUE = 256
# values made only of these characters cannot carry an attack (and are most of the traffic)
_SAFE_RE = re.compile(r"[\w\-.]*")
# an ASCII character outside that class: a search stops at the first one, which a JSON text, a
# URL or a sentence has within its first few characters (deleting the safe bytes, the earlier
# test, read every byte of a 10 KB body to find the `{` at its start)
_UNSAFE_ASCII_RE = re.compile(r"[^A-Za-z0-9_\-.]")


def _safe(value: str) -> bool:
    """_SAFE_RE.fullmatch(value): on ASCII text by a search for an unsafe character (the regex
    tests \\w's Unicode property per character: 20 ms on 1 MB)."""
    if value.isascii():
        return _UNSAFE_ASCII_RE.search(value) is None
    return _SAFE_RE.fullmatch(value) is not None
# two linear searches (one "lower then upper" regex would be quadratic on "AAAA...")
_LOWER_RE = re.compile(r"[a-z]")
_UPPER_RE = re.compile(r"[A-Z]")
# What one value (or unit) was found to carry: b"" for nothing (nearly every value), else
# [[type, summed score, [[type, location, rule_id, excerpt, score], ...]], ...] marshalled,
# made into AttackInfo objects only when applied. Bytes, not nested tuples or lists: the
# caches keep 32k entries and replace one for every new one; CPython counts each freed old
# entry against a new one, so its young collections come late and must then walk every
# container made since (with tuples: 5-32k after the attack corpus, collections of 20-40 ms
# inside one request). Bytes are never tracked by the collector, and marshal is C code.
Found = bytes
NOTHING: Found = b""


def _encode_found(by_type: dict[str, list[list]]) -> Found:
    return marshal.dumps([[typ, sum(info[4] for info in infos), infos] for typ, infos in by_type.items()])


# the analysers of paths and hosts: the only ones that read a value's path-canonical copies
# (readings.Readings.canonical; fullwidth '／' or '。' mean '/' and '.' to a path or host
# normalising layer, to no SQL, shell or HTML parser)
CANONICAL_READERS = frozenset({"ptrav", "ssrf"})
# the analysers that read a text NFKC folds beside its fold (readings.Readings.folded_away; the
# others read the fold in its place): to the host analyser the spelling is the finding
SPELLING_READERS = frozenset({"ssrf"})
# detectors that read a value whole, candidate by candidate (node/detect/candidates.py): their
# verdict does not depend on the signature that gates windows
WHOLE_VALUE_DETECTORS = frozenset({"ptrav", "ssrf", "nosqli", "ldapi", "xxe"})
# (value, kind, out_of_time, gate) -> rule name or None
_DETECTORS: dict[str, Callable[[str, str, Callable[[], bool], Callable[[str], bool]], str | None]] = {
    "sqli": detect_sqli,
    "shell": detect_shell,
    "log4j": detect_log4j,
    "ptrav": detect_ptrav,
    "ssrf": detect_ssrf,
    "nosqli": detect_nosqli,
    "ldapi": detect_ldapi,
    "xxe": detect_xxe,
    "xss": detect_xss,
    "ssti": detect_ssti,
}


class _Run:
    """One request's verdict and work accounting."""

    __slots__ = ("det", "seen", "seen_units", "chars", "deadline", "allowed", "cpu_start", "stopped",
                 "threshold", "cuts", "max_body", "globs")

    def __init__(self, threshold: int, size: int = 0, max_body: int = MAX_BODY,
                 deadline: tuple[float, float] = DEADLINE) -> None:
        self.max_body = max_body
        self.det = Detection(threshold=threshold)
        self.threshold = threshold
        self.seen: set[tuple[str, str, str]] = set()
        self.seen_units: set[tuple] = set()
        self.chars = 0
        self.allowed = deadline[0] + deadline[1] * size / _MIB
        # the clocks start at the first out_of_time() call, i.e. once MIN_JUDGED_CHARS were
        # judged: most requests never get there, and never pay for a thread_time() call. A
        # large request's start now (EARLY_CLOCK_BYTES)
        self.deadline = 0.0
        self.cpu_start = -1.0
        if size >= EARLY_CLOCK_BYTES:
            self._start_clock()
        self.stopped = False
        self.cuts = 0  # limits met so far (a verdict judged while this grew is not cached)
        self.globs: RequestGlobWalks | None = None  # the shell analyser's glob walks left (made at its first run)

    def cut(self, reason: str) -> None:
        self.det.mark_partial(reason)
        self.cuts += 1

    def out_of_time(self) -> bool:
        """The bound is on this thread's CPU time: on a busy machine the wall clock also
        counts time spent waiting for a core, and the verdict must not depend on the load.
        The wall clock is checked first because it is cheap (no system call)."""
        if time.perf_counter() <= self.deadline:
            return False
        if self.cpu_start < 0:
            self._start_clock()
            return False
        spent = time.thread_time() - self.cpu_start
        if spent <= self.allowed:
            self.deadline = time.perf_counter() + (self.allowed - spent)
            return False
        return True

    def _start_clock(self) -> None:
        self.cpu_start = time.thread_time()
        self.deadline = time.perf_counter() + self.allowed

    def stop(self) -> None:
        """The time bound is reached: nothing more is judged."""
        self.cut("deadline")
        self.stopped = True

    def check_time(self) -> bool:
        """For the detectors' window loops: True (and the run stopped) once the time bound is
        reached; a small request is always judged whole (MIN_JUDGED_CHARS)."""
        if self.chars > MIN_JUDGED_CHARS and self.out_of_time():
            self.stop()
            return True
        return False

    def apply(self, found: Found) -> list:
        """Add a non-empty `found` to the verdict; returns its entries (for a unit's cache)."""
        det = self.det
        entries = marshal.loads(found)
        for _typ, total, infos in entries:
            if total > det.score:
                det.score = total
            if total >= self.threshold:
                det.attacks.extend([AttackInfo(*info) for info in infos])
        return entries


def _parse_body_unit(key: Any, sink: FieldSink) -> None:
    _, content_type, encoding, body = key
    parse_body(body, content_type, encoding, sink)


def _unit_size(key: tuple) -> int:
    return len(key[-1]) + len(key[-2] or "")


# requests with more header lines than this have their trivial ones dropped in bulk
MIN_FILTERED_HEADERS = 64


def _judged_header_lines(lines: list) -> list:
    """The header lines whose value is not a short trivial token: the others make one field
    that _judge_fields dismisses unjudged (any header name: a cookie, a referer without a
    query, nothing to decode). One regex pass over the joined values and C-level filtering:
    50,000 `X-H-1: v1` lines cost no Python step each, and no unit-cache entry."""
    values = list(map(itemgetter(1), lines))
    nontrivial = nontrivial_header_values(values)
    if nontrivial is None:
        return lines
    return list(compress(lines, map(nontrivial.__contains__, values)))


def _prototype_path(value: str) -> bool:
    """A [\\w.-] key that JavaScript's merges follow to Object.prototype (`__proto__.isAdmin`,
    `constructor.prototype.x`): judged though it is made of harmless characters."""
    return "__proto__" in value or "prototype" in value


def _plain_token(value: str, location: str) -> bool:
    """A long [\\w.-] value that _judge_field would dismiss without decoding: ids, hashes,
    timestamps, words. (Mixed case could be base64, as could upper case that decodes to text;
    '0x' fuzzers' text hex, '..' traversal, a prototype path.)"""
    if ".." in value or location == "header.user-agent" or _prototype_path(value):
        return False
    low = value.lower()
    if low in ALONE_COMMANDS or "0x" in low:
        return False
    # lower case (ids, hashes, words: most JSON leaves) is neither mixed case nor upper-case base64
    if len(value) >= LONG_VALUE and value.isascii():
        # the test below, answered by one more case mapping (0.6 ms on 1 MB), where str.islower
        # tests each character's Unicode property (5 ms) and _mixed_case maps the value twice again
        if value.upper() != value:  # a lower-case letter: lower case only, or mixed case
            return low == value
        return upper_b64_text(value) is None  # no lower-case letter: neither lower nor mixed case
    return value.islower() or (not _mixed_case(value) and upper_b64_text(value) is None)


def _mixed_case(value: str) -> bool:
    """Has both an [a-z] and an [A-Z] letter (ASCII: without a regex)."""
    if value.isascii():
        return value.lower() != value and value.upper() != value
    return bool(_LOWER_RE.search(value) and _UPPER_RE.search(value))


@functools.lru_cache(maxsize=8)  # each analyser of a long text asks for its digest in turn (8: few held)
def _digest(text: str) -> bytes:
    """A cache key for a long text: BLAKE2b, so no one who sends requests can make two texts
    share a key (~1 GB/s: a microsecond per KiB, against tens of them to judge a KiB)."""
    return hashlib.blake2b(_to_bytes(text), digest_size=DIGEST_BYTES).digest()


def _value_key(key: tuple[str, str, str]) -> tuple[str, str, str | bytes]:
    """The verdict-cache key of a field (kind, location, value): itself up to MAX_CACHED_VALUE
    characters, else with the value's digest in its place."""
    if len(key[2]) <= MAX_CACHED_VALUE:
        return key
    return key[0], key[1], _digest(key[2])


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _framed(text: str) -> bytes:
    """`text` as every signature scan reads it: between line breaks (signatures anchor on them),
    so a reading scanned alone and in the value's joined scan is framed alike."""
    return _to_bytes("\n" + text + "\n")


class _Prepared:
    """One value's readings as each analyser's pre-filter scans them and as the analysers read
    them, made once for all its analysers (up to eight of them ask for the same readings in
    turn: windows.normalise's small cache missed every time on a value with more than four
    long readings, 6 normalisations of each of five 150-200 KB readings of one body)."""

    __slots__ = ("_normalised", "_scanned")

    def __init__(self) -> None:
        self._normalised: dict[str, str] = {}
        self._scanned: dict[str, bytes] = {}

    def normalised(self, form: str) -> str:
        text = self._normalised.get(form)
        if text is None:
            text = self._normalised[form] = normalise(form)
        return text

    def scanned(self, form: str) -> bytes:
        data = self._scanned.get(form)
        if data is None:
            data = self._scanned[form] = _framed(form)
        return data


class Engine:
    """One engine per node; not for concurrent use from several threads (hyperscan scratch)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, max_body: int = MAX_BODY,
                 deadline: tuple[float, float] = DEADLINE) -> None:
        self.threshold = threshold
        self.max_body = max_body  # bytes of (decompressed) body judged; past it: partial "body"
        # the CPU time a request may take: seconds, plus seconds per MiB of it (_Run.out_of_time)
        self.deadline = deadline
        # when a list: every field sent to _judge_field (not dismissed, not in a cache) is
        # appended to it (tests, tools: the engine's modules may be compiled, and then cannot
        # be patched)
        self.judged: list[tuple[str, str, str]] | None = None
        self.request_sigs = SignatureSet(load_signatures("request.yaml"))
        self.response_sigs = SignatureSet(load_signatures("response.yaml"))
        self._budget = MAX_DETECTOR_CALLS
        # each detector's pre-filter signatures in a database of their own, and where each
        # signature sits in it: whether a reading or a window matches one of them is a scan 3-5x
        # cheaper than one of the whole set (the tail of large bodies was 15% such scans)
        sigs = self.request_sigs.signatures
        self._prefilters = {name: SignatureSet([sig for sig in sigs if sig.detector == name]) for name in _DETECTORS}
        self._prefilter_index = {i: self._prefilters[sig.detector].signatures.index(sig)
                                 for i, sig in enumerate(sigs) if sig.detector}
        self._evictions = 0
        self._cache: OrderedDict[tuple[str, str, str | bytes], Found] = OrderedDict()
        self._unit_cache: OrderedDict[tuple, Found] = OrderedDict()
        # the last windows' scans by a detector's pre-filters (Engine._gate)
        self._window_hits = functools.lru_cache(maxsize=WINDOW_SCANS_KEPT)(self._scan_window)
        self._analysed: OrderedDict[tuple, str | None] = OrderedDict()
        self._warm_up()
        # the engine's tables (signatures, caches' structure, compiled regexes) live as long as
        # the process: move them out of the collector's view so collections stay short
        gc.freeze()
        log.info("detection engine: %d request and %d response signatures",
                 len(self.request_sigs.signatures), len(self.response_sigs.signatures))

    def _warm_up(self) -> None:
        """Run every parser and detector once, so lazy initialisation (regex compilation,
        codec and entity tables) is paid here and not by the first real request."""
        samples = [
            RequestMessage("GET", "/a/../b?q=%27%20or%201%3D1--&x=%3Cscript%3E&b=PHNjcmlwdD4%3D&u=%u003c", [
                (b"Host", b"warm.up"), (b"User-Agent", b"Mozilla/5.0 (X11) ; ls -la | id"),
                (b"Cookie", b"a=${jndi:ldap://x/a}; b=&#x3c;"), (b"Referer", b"http://h/?q=1%20or%201=1")]),
            RequestMessage("POST", "/j", [(b"Content-Type", b"application/json")],
                           b'{"a": ["\\u003cb\\u003e", {"$ne": 1}], "b": "{\"c\": \"MSBhbmQgMT0y\"}"}'),
            RequestMessage("POST", "/x", [(b"Content-Type", b"application/xml")],
                           b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a x="1">t&amp;<![CDATA[d]]></a>'),
            RequestMessage("POST", "/m", [(b"Content-Type", b"multipart/form-data; boundary=B")],
                           b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.php"\r\n\r\n<?php ?>\r\n--B--\r\n'),
            RequestMessage("POST", "/f", [(b"Content-Type", b"application/x-www-form-urlencoded"),
                                          (b"Content-Encoding", b"gzip")], gzip.compress(b"a=%c0%ae%c0%ae%2f&b=0x2e")),
        ]
        for msg in samples:
            self.analyze_request(msg)
        self.analyze_response(ResponseMessage(500, [], b"You have an error in your SQL syntax"))
        self._cache.clear()
        self._unit_cache.clear()
        self._analysed.clear()

    def _remember(self, cache: OrderedDict, key: tuple, found: Found | str | None, limit: int) -> None:
        """Cache a verdict; past `limit` entries the oldest goes (a hot one is re-added once).

        Evictions also keep the collector's youngest generation small. CPython starts a young
        collection when allocations minus deallocations of tracked objects pass 700; a full
        cache frees an old entry for every new one, so that count stays flat while the new
        keys (tuples, tracked until a collection has looked at them) pile up: 11-32k young
        objects, and the collection that finally comes takes 15-40 ms inside one request. A
        young collection every EVICTIONS_PER_COLLECTION evictions costs well under a
        millisecond and keeps the pile small."""
        cache[key] = found
        if len(cache) > limit:
            cache.popitem(last=False)
            self._evictions += 1
            if self._evictions >= EVICTIONS_PER_COLLECTION:
                self._evictions = 0
                gc.collect(0)

    # ------------------------------------------------------------------ requests

    def analyze_request(self, msg: RequestMessage, max_body: int | None = None) -> Detection:
        """`max_body`: body bytes inspected for this request (a host/path override), else the
        engine's."""
        size = len(msg.target) + len(msg.body) + HEADER_LINE_COST * len(msg.headers)
        run = _Run(self.threshold, size, max_body or self.max_body, self.deadline)
        self._budget = MAX_DETECTOR_CALLS + size // BYTES_PER_DETECTOR_CALL
        try:
            # the target and each header line are "units" whose whole verdict is cached: most
            # traffic repeats them (static paths, User-Agent, Accept, a client's cookies), and a
            # hit skips parsing as well as judging
            self._judge_unit(run, ("target", msg.target), parse_target, msg.target)  # type: ignore[arg-type]
            units = self._unit_cache
            seen_units = run.seen_units
            lines = msg.headers
            if len(lines) > MIN_FILTERED_HEADERS:
                lines = _judged_header_lines(lines)
            for i, line in enumerate(() if run.stopped else lines):
                if i & 255 == 255 and run.out_of_time():
                    # thousands of header lines (mitmproxy accepts any number) are bounded in
                    # time too, not only the values judged: what is left unread is a partial verdict
                    run.stop()
                    break
                key = line if type(line) is tuple else tuple(line)
                found = units.get(key)  # the hot path: a header line seen before
                if found is None:
                    self._judge_unit(run, key, parse_header_line, key)  # type: ignore[arg-type]
                    if run.stopped:
                        break
                elif found and key not in seen_units:
                    seen_units.add(key)
                    run.apply(found)
            if msg.body and not run.stopped:
                # what parse_body reads: the bytes and the two headers that say how to read them
                framing = body_headers(msg)
                body_key = ("body", *framing, msg.body)
                self._judge_unit(run, body_key, _parse_body_unit, body_key)
                # a charset that gives %-escapes other meanings reads the query of a request
                # with a body too (ASP.NET)
                codec = escapes_codec(framing[0]) if "%" in msg.target and not run.stopped else None
                if codec:
                    unit = ("query-charset", codec, msg.target)
                    self._judge_unit(run, unit, parse_query_in_codec, unit)  # type: ignore[arg-type]
        except Exception:  # the parser must never take the node down: judge what we can
            log.exception("request parser failed; judging the raw target only")
            run.cut("error")
            if not run.det.attacks:
                self._judge_fields(run, [("path", "path", msg.target[:MAX_CACHED_UNIT])])
        return run.det

    def analyze_value(self, value: str, location: str = "query.x", kind: str = "query") -> Detection:
        """Judge one value (tests, tools)."""
        run = _Run(self.threshold, len(value), self.max_body, self.deadline)
        self._budget = MAX_DETECTOR_CALLS
        self._judge_fields(run, [(kind, location, value)])
        return run.det

    def _judge_unit(self, run: _Run, key: tuple, parse: Callable[[object, FieldSink], None], raw: object) -> None:
        if key in run.seen_units:
            return  # the same header line twice: judged once
        run.seen_units.add(key)
        cacheable = _unit_size(key) <= MAX_CACHED_UNIT
        cache = self._unit_cache
        if cacheable:
            found = cache.get(key)
            if found is not None:
                if found:
                    run.apply(found)
                return
        sink = FieldSink(run.max_body)
        parse(raw, sink)
        whole = not (sink.cuts or sink.dropped)  # the parse read everything (nearly always)
        if not whole:
            for reason in sink.reasons:
                run.cut(reason)
        collected: list = []
        complete = self._judge_fields(run, sink.fields, collected)
        if cacheable and complete and whole:
            self._remember(cache, key, marshal.dumps(collected) if collected else NOTHING, MAX_UNIT_CACHE)

    def _judge_fields(self, run: _Run, fields: list[tuple[str, str, str]],
                      collected: list | None = None) -> bool:
        """Judge `fields` into run.det (and `collected`); False when the verdict is partial
        (time bound reached, detector budget spent): such a verdict must not be cached."""
        cache = self._cache
        seen = run.seen
        safe = _safe
        judge = self._judge_field
        complete = True
        for key in fields:
            # key = (kind, location, value): a field is its own verdict-cache key
            value = key[2]
            # isalnum() (a C loop over the same Unicode property \w tests) answers for most
            # values without the regex; it is False for "", "_", "-", "." and lets the regex judge
            plain = value.isalnum() or safe(value)
            if plain and key[0] != "filename":
                # most names and values: nothing to judge, not worth a cache entry
                if len(value) < 8:
                    if short_dismissed(value):
                        continue
                elif _plain_token(value, key[1]):
                    continue
            run.chars += len(value)
            if run.chars > MIN_JUDGED_CHARS and run.out_of_time():
                # bounded cost: a request built to be slow gets judged on what came first, and
                # its verdict says so
                log.debug("detection time spent after %d of %d values", fields.index(key), len(fields))
                run.stop()
                return False
            judged_before = len(seen)
            seen.add(key)
            if len(seen) == judged_before:  # same value twice (e.g. a repeated parameter): judge once
                continue
            cache_key = _value_key(key)
            found = cache.get(cache_key)
            if found is None:
                if self.judged is not None:
                    self.judged.append(key)
                cuts = run.cuts
                try:
                    found = judge(run, key[1], value, key[0], plain)
                except Exception:  # a detector bug must not take the node down: log, go on
                    log.exception("detection failed on %s; value skipped", key[1])
                    run.cut("error")
                    found = NOTHING
                if run.cuts != cuts:
                    complete = False  # judged in part (budget, time): not a verdict to keep
                else:
                    self._remember(cache, cache_key, found, MAX_CACHE)
            if found:
                entries = run.apply(found)
                if collected is not None:
                    collected.extend(entries)
            if run.stopped:
                return False
        return complete

    def _judge_field(self, run: _Run, location: str, value: str, kind: str, plain: bool) -> Found:
        """Per attack type found in this value: (type, summed score, findings). `plain`: the
        value is made of _SAFE_RE's characters only (_judge_fields tested it)."""
        if plain and ".." not in value and kind != "filename" and location != "header.user-agent":
            # base64 the readings' search does not try: too short, or in one case
            if _prototype_path(value):
                # __proto__.isAdmin: judged as it is (pp.proto-key); {"constructor": {"prototype":
                # ...}}: the key's path says what the key alone does not
                nested = kind == "key" and value == "prototype" and location.endswith(".constructor.prototype")
                found = Readings(["constructor.prototype" if nested else value], False)
            else:
                token_decoded = short_b64_text(value) if len(value) < 8 else upper_b64_text(value)
                if value.lower() in ALONE_COMMANDS:
                    found = Readings([value], False)
                elif token_decoded is not None:
                    found = Readings([value, token_decoded], False)
                elif len(value) < 8 or not (_mixed_case(value) or "0x" in value.lower()):
                    # harmless characters; only base64 (upper and lower case letters, as base64 of
                    # text has) or fuzzers' text hex (0x2e0x2e0x2f) could hide something
                    return NOTHING
                else:
                    found = self._readings(run, value, kind)
                if len(found.forms) == 1:
                    return NOTHING
        else:
            found = self._readings(run, value, kind)
        hits = self.request_sigs.scan(_framed("\n".join(found.forms)))
        if not hits:
            return NOTHING
        sigs = self.request_sigs.signatures
        by_type: dict[str, list[list]] = {}
        verdicts: dict[str, str | None] = {}
        prepared = _Prepared()
        for idx in sorted(hits):
            sig = sigs[idx]
            if not sig.applies_to(kind, location):
                continue
            rule_id, score = sig.id, sig.score
            if sig.detector:
                if sig.detector in verdicts:  # several pre-filters of one detector: judged once
                    rule = verdicts[sig.detector]
                    if not rule:
                        continue
                    rule_id = f"{sig.id}.{rule}"
                elif self._budget <= 0:
                    run.cut("budget")
                    rule_id, score = f"{sig.id}.unverified", UNVERIFIED_SCORE
                else:
                    self._budget -= 1
                    rule = None
                    texts = self._detector_texts(sig.detector, found, prepared)
                    for text in texts:
                        rule = self._analysed_text(run, sig.detector, idx, text, kind)
                        if rule or run.stopped:
                            break
                    if not run.stopped and (sig.detector in WHOLE_VALUE_DETECTORS
                                            or all(len(text) <= MEMO_CHARS for text in texts)):
                        # a longer value is judged in the windows this signature matches only
                        # (unless the detector reads it whole, without windows)
                        verdicts[sig.detector] = rule
                    if not rule:
                        continue
                    rule_id = f"{sig.id}.{rule}"
            shown = found.forms[-1] if len(found.forms) > 1 else value
            by_type.setdefault(sig.type, []).append([sig.type, location, rule_id, excerpt(shown), score])
        return _encode_found(by_type) if by_type else NOTHING

    def _analysed_text(self, run: _Run, detector: str, idx: int, text: str, kind: str) -> str | None:
        """`detector`'s verdict on `text` (called by signature `idx`), from the texts analysed
        before when it is one of them. A text longer than MEMO_CHARS is read only in the windows
        that signature gates, so the key names it; a verdict the time bound cut is not kept."""
        gated = len(text) > MEMO_CHARS and detector not in WHOLE_VALUE_DETECTORS
        key = (detector, kind, idx if gated else -1, text if len(text) <= ANALYSED_AS_IS else _digest(text))
        kept = self._analysed
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
        if detector == "shell":
            rule = self._shell(run, text, kind, idx)
        else:
            rule = _DETECTORS[detector](text, kind, run.check_time, self._gate(idx))
        if not run.stopped:
            self._remember(kept, key, rule, ANALYSED_KEPT)
        return rule

    def _shell(self, run: _Run, text: str, kind: str, idx: int) -> str | None:
        """The shell analyser's verdict, counting its glob walks against the request's
        (shell.MAX_REQUEST_GLOB_WALKS, handed over in a context variable: the node judges in two
        threads). Past them it finds a glob flood, and nothing more of the request is judged."""
        if run.globs is None:
            run.globs = RequestGlobWalks()
        walks = REQUEST_GLOB_WALKS.set(run.globs)
        try:
            rule = _DETECTORS["shell"](text, kind, run.check_time, self._gate(idx))
        finally:
            REQUEST_GLOB_WALKS.reset(walks)
        if run.globs.exhausted and not run.stopped:
            run.cut("budget")  # a partial verdict: none judged under the request's count is kept
            run.stopped = True
        return rule

    def _detector_texts(self, detector: str, found: Readings, prepared: _Prepared | None = None) -> list[str]:
        """The readings a pre-filter of `detector` matches on their own, normalised, each once
        (of a value's many readings, one or two): the same for each of its pre-filters, so one
        verdict per detector and value holds. A single form is the one the value's scan matched.
        Path-canonical copies (found.canonical) are read by CANONICAL_READERS only, and a
        text NFKC folds (found.folded_away) by SPELLING_READERS only, beside its fold
        (`①②⑦.⓪.⓪.①` is a spelling nobody links to by accident).
        `prepared`: the value's readings as its other analysers had them made."""
        if prepared is None:
            prepared = _Prepared()
        forms = found.forms
        if len(forms) == 1:
            return [prepared.normalised(forms[0])]
        if found.canonical and detector not in CANONICAL_READERS:
            forms = [form for form in forms if form not in found.canonical]
        if found.folded_away and detector not in SPELLING_READERS:
            forms = [form for form in forms if form not in found.folded_away]
        scan = self._prefilters[detector].scan
        return list(dict.fromkeys(prepared.normalised(form) for form in forms if scan(prepared.scanned(form))))

    @staticmethod
    def _readings(run: _Run, value: str, kind: str) -> Readings:
        """The value and its readings (readings.py); a decoding bound reached is a partial
        verdict."""
        found = readings(value, kind)
        if found.cut:
            run.cut("decode")
        return found

    def _gate(self, idx: int) -> Callable[[str], bool]:
        """Does signature `idx` (the one calling a detector) match this window of a long value?
        The window is scanned by the detector's pre-filters only, and the scan kept for its
        other pre-filters and for the same window of another reading."""
        hits = self._window_hits
        detector = self.request_sigs.signatures[idx].detector
        local = self._prefilter_index[idx]
        return lambda window: local in hits(detector, window)

    def _scan_window(self, detector: str, window: str) -> set[int]:
        return self._prefilters[detector].scan(_framed(window))

    # ------------------------------------------------------------------ responses

    def analyze_response(self, msg: ResponseMessage) -> Detection:
        det = Detection(threshold=self.threshold)
        body = msg.body
        if not body:
            return det
        enc = msg.header("content-encoding")
        if enc:
            body = inflate(body, enc) or b""
        hits = self.response_sigs.scan(body[:MAX_RESPONSE_SCAN])
        for idx in sorted(hits):
            sig = self.response_sigs.signatures[idx]
            det.attacks.append(AttackInfo(sig.type, "response.body", sig.id, "", sig.score))
            det.score = max(det.score, sig.score)
        return det
