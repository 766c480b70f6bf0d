"""ModSecurity v3 + OWASP CRS as a peer engine, through libmodsecurity's C API (ctypes).

The field's yardstick for scripts/bench_detect.py: the same request judged the way
nginx + ModSecurity + CRS judges it. One transaction per request: connection, URI, headers
(phase 1), body (phase 2, run even for GET: CRS 3.3 decides in phase 2, rule 949110),
then `msc_intervention`; a 403 intervention is a block (CRS anomaly scoring, threshold 5).
No logging phase (a server runs it after the response) and no response phases.

Configuration, in this order:
  1. the engine settings of ModSecurity's modsecurity.conf-recommended that matter here
     (rule engine on, request bodies read, body/argument/JSON-depth/PCRE limits, the XML and
     JSON body processors);
  2. the Debian package's crs-setup.conf;
  3. the paranoia level, and the allowed request content types widened (see ALLOWED_CONTENT_TYPES);
  4. CRS's rules, in the order of the package's owasp-crs.load.

Debian packages: libmodsecurity3 (the library), modsecurity-crs (the rules).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from wallarm_wire.protocol import RequestMessage

DEBIAN_PACKAGES = "libmodsecurity3 modsecurity-crs"
LIBRARY_NAMES = ("libmodsecurity.so.3", "libmodsecurity.so")
CRS_SETUP_CANDIDATES = (
    Path("/etc/modsecurity/crs/crs-setup.conf"),
    Path("/usr/share/modsecurity-crs/crs-setup.conf"),
    Path("/etc/modsecurity/crs-setup.conf"),
)
CRS_RULES_CANDIDATES = (Path("/usr/share/modsecurity-crs/rules"), Path("/etc/modsecurity/crs/rules"))

# modsecurity.conf-recommended (ModSecurity v3.0.9), the parts that decide what is inspected
# and bound the work (PCRE match limits: without them CRS spends minutes on some regex-bomb
# inputs). Body limits as recommended, but ProcessPartial instead of Reject; and none of its
# status-400 rules (body parse errors, 200002-200007): a 413 or 400 is a size or syntax policy
# a site chooses, not detection; this benchmark counts 403s.
ENGINE_SETTINGS = """
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecResponseBodyAccess Off
SecArgumentSeparator &
SecCookieFormat 0
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "(?:application(?:/soap\\+|/)|text/)xml" \
    "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "application/json" \
    "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
"""

# CRS 3.3's default list (rule 901162) plus the types real APIs send. Rule 920420 blocks any
# other type outright (a critical score alone reaches the threshold): that is a site's content
# policy, not attack detection, and left narrow it blocked 12.4% of blazehttp's benign requests
# (text/plain beacons, protobuf, ndjson) instead of 2.0%, attacks unchanged (a 6,000-record
# sample; docs/decisions.md). Our engine has no such policy either.
ALLOWED_CONTENT_TYPES = (
    # CRS 3.3.4's defaults
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/related", "text/xml",
    "application/xml", "application/soap+xml", "application/json", "application/cloudevents+json",
    "application/cloudevents-batch+json",
    # widened: what browsers and API clients also send
    "text/plain", "application/octet-stream", "application/x-protobuf", "application/protobuf",
    "application/x-protobuffer", "application/grpc-web+proto", "application/x-ndjson",
    "application/x-json-stream", "application/csp-report", "application/reports+json",
    "application/x-amz-json-1.0", "application/x-amz-json-1.1", "application/graphql",
    "application/javascript", "text/javascript", "text/csv", "text/html", "application/x-amf",
)

BLOCK_STATUS = 403
CLIENT_ADDR, CLIENT_PORT = b"192.0.2.10", 51000
SERVER_ADDR, SERVER_PORT = b"127.0.0.1", 80


class ModSecurityUnavailable(RuntimeError):
    """libmodsecurity or the CRS is not installed (or does not load)."""


class ModSecurityError(RuntimeError):
    """The rules did not load, or a transaction call failed."""


class _Intervention(ctypes.Structure):
    # ModSecurityIntervention (modsecurity/intervention.h); url and log are malloc'd by the
    # library when set and must be freed by the caller (3.0.9 has no msc_intervention_cleanup)
    _fields_ = [
        ("status", ctypes.c_int),
        ("pause", ctypes.c_int),
        ("url", ctypes.c_void_p),
        ("log", ctypes.c_void_p),
        ("disruptive", ctypes.c_int),
    ]


_LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


@dataclass(frozen=True, slots=True)
class CrsInstall:
    setup: Path
    rules: list[Path]  # in load order
    before: Path | None  # REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
    after: Path | None  # RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
    version: str


@dataclass(frozen=True, slots=True)
class PeerVerdict:
    blocked: bool
    status: int  # the intervention's status, 0 when there was none
    log: str  # the intervention's log line (names the rule that decided), "" when none


def find_crs(setup_candidates: tuple[Path, ...] = CRS_SETUP_CANDIDATES,
             rules_candidates: tuple[Path, ...] = CRS_RULES_CANDIDATES) -> CrsInstall:
    """The installed CRS: the first setup file and rules directory found (Debian's layout first)."""
    setup = next((p for p in setup_candidates if p.is_file()), None)
    rules_dir = next((p for p in rules_candidates if p.is_dir()), None)
    if setup is None or rules_dir is None:
        raise ModSecurityUnavailable(
            f"OWASP CRS not found (looked for {', '.join(map(str, setup_candidates + rules_candidates))}); "
            f"install the Debian packages: apt-get install {DEBIAN_PACKAGES}")
    rules = sorted(p for p in rules_dir.glob("*.conf") if not p.name.startswith(("REQUEST-900-", "RESPONSE-999-")))
    # the site's exclusion files sit next to crs-setup.conf (Debian), or with the rules
    before = _first_file(setup.parent, rules_dir, name="REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf")
    after = _first_file(setup.parent, rules_dir, name="RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf")
    return CrsInstall(setup, rules, before, after, crs_version(rules))


def crs_settings(paranoia: int) -> str:
    """The paranoia level and the allowed content types, as CRS reads them."""
    # ids 900000/900001/900220 are the ones crs-setup.conf reserves (commented out there)
    allowed = " ".join(f"|{t}|" for t in ALLOWED_CONTENT_TYPES)
    return (
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia}"\n'
        f'SecAction "id:900001,phase:1,nolog,pass,t:none,setvar:tx.executing_paranoia_level={paranoia}"\n'
        f"SecAction \"id:900220,phase:1,nolog,pass,t:none,setvar:'tx.allowed_request_content_type={allowed}'\"\n"
    )


def rule_sources(crs: CrsInstall, paranoia: int) -> list[str | Path]:
    """What ModSecurity loads, in order: rule texts (str) and rule files (Path). The same for
    the in-process peer here and for nginx's module (scripts/peers/nginx_modsecurity.py)."""
    out: list[str | Path] = [ENGINE_SETTINGS, crs.setup, crs_settings(paranoia)]
    if crs.before:
        out.append(crs.before)
    out += crs.rules
    if crs.after:
        out.append(crs.after)
    return out


def _first_file(*dirs: Path, name: str) -> Path | None:
    return next((d / name for d in dirs if (d / name).is_file()), None)


def crs_version(rules: list[Path]) -> str:
    for path in rules:
        m = re.search(r"ver:'OWASP_CRS/([\d.]+)'", path.read_text("utf-8", "replace"))
        if m:
            return m.group(1)
    return "unknown"


def load_library() -> ctypes.CDLL:
    names = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("modsecurity")
    if found:
        names.append(found)
    errors = []
    for name in names:
        try:
            return _declare(ctypes.CDLL(name))
        except OSError as exc:
            errors.append(str(exc))
    raise ModSecurityUnavailable(
        f"libmodsecurity (v3) not found ({'; '.join(errors)}); install the Debian packages: "
        f"apt-get install {DEBIAN_PACKAGES}")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Argument and result types of the C API functions used (modsecurity/modsecurity.h,
    rules_set.h, transaction.h); pointers as c_void_p so 64-bit handles are not truncated."""
    vp, cp, ci, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
    sigs = {
        "msc_init": ([], vp),
        "msc_who_am_i": ([vp], cp),
        "msc_set_connector_info": ([vp, cp], None),
        "msc_set_log_cb": ([vp, _LOG_CB], None),
        "msc_cleanup": ([vp], None),
        "msc_create_rules_set": ([], vp),
        "msc_rules_add": ([vp, cp, ctypes.POINTER(vp)], ci),
        "msc_rules_add_file": ([vp, cp, ctypes.POINTER(vp)], ci),
        "msc_rules_cleanup": ([vp], ci),
        "msc_new_transaction": ([vp, vp, vp], vp),
        "msc_process_connection": ([vp, cp, ci, cp, ci], ci),
        "msc_process_uri": ([vp, cp, cp, cp], ci),
        "msc_add_n_request_header": ([vp, cp, sz, cp, sz], ci),
        "msc_process_request_headers": ([vp], ci),
        "msc_append_request_body": ([vp, cp, sz], ci),
        "msc_process_request_body": ([vp], ci),
        "msc_intervention": ([vp, ctypes.POINTER(_Intervention)], ci),
        "msc_transaction_cleanup": ([vp], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


def _libc_free() -> ctypes._CFuncPtr:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    return libc.free


def _http_version(msg: RequestMessage) -> bytes:
    # ModSecurity wants "1.1", not "HTTP/1.1"
    return msg.http_version.removeprefix("HTTP/").encode("ascii", "replace") or b"1.1"


class ModSecurityPeer:
    """One ModSecurity instance with CRS loaded; `judge` runs one request through it.

    Not thread-safe (one transaction at a time). Close it (or use it as a context manager)
    to free the rules and the engine.
    """

    def __init__(self, paranoia: int = 1, crs: CrsInstall | None = None) -> None:
        if not 1 <= paranoia <= 4:
            raise ValueError(f"paranoia level must be 1-4, not {paranoia}")
        self.paranoia = paranoia
        self.crs = crs or find_crs()
        self._lib = load_library()
        self._free = _libc_free()
        self.log_messages = 0  # rule-match log lines the library emitted (silenced, counted)
        self._log_cb = _LOG_CB(self._on_log)  # kept referenced: the library holds the pointer
        self._msc = self._lib.msc_init()
        self._rules: int | None = None
        try:
            self._lib.msc_set_connector_info(self._msc, b"wallarm-kong-connector bench_detect peer")
            self._lib.msc_set_log_cb(self._msc, self._log_cb)
            self.version = (self._lib.msc_who_am_i(self._msc) or b"").decode("utf-8", "replace")
            self._rules = self._lib.msc_create_rules_set()
            self._load_rules()
        except BaseException:
            self.close()
            raise

    # -- setup
    def _on_log(self, _data: int | None, _message: int | None) -> None:
        self.log_messages += 1

    def _load_rules(self) -> None:
        for source in rule_sources(self.crs, self.paranoia):
            if isinstance(source, Path):
                self._add_file(source)
            else:
                self._add_text(source, source.strip().splitlines()[0][:60])

    def _add_text(self, text: str, what: str) -> None:
        error = ctypes.c_void_p()
        n = self._lib.msc_rules_add(self._rules, text.encode(), ctypes.byref(error))
        self._check(n, error, what)

    def _add_file(self, path: Path) -> None:
        error = ctypes.c_void_p()
        n = self._lib.msc_rules_add_file(self._rules, str(path).encode(), ctypes.byref(error))
        self._check(n, error, str(path))

    def _check(self, n: int, error: ctypes.c_void_p, what: str) -> None:
        if n >= 0:
            return
        message = ctypes.string_at(error.value).decode("utf-8", "replace") if error.value else "unknown error"
        if error.value:
            self._free(error.value)  # strdup'd by the library
        raise ModSecurityError(f"ModSecurity refused {what}: {message.strip()}")

    # -- requests
    def judge(self, msg: RequestMessage) -> PeerVerdict:
        """Run one request through phases 1 and 2; the first intervention decides."""
        lib = self._lib
        tx = lib.msc_new_transaction(self._msc, self._rules, None)
        if not tx:
            raise ModSecurityError("msc_new_transaction failed")
        try:
            lib.msc_process_connection(tx, CLIENT_ADDR, CLIENT_PORT, SERVER_ADDR, SERVER_PORT)
            target = msg.target.encode("utf-8", "surrogateescape")
            lib.msc_process_uri(tx, target, msg.method.encode("ascii", "replace"), _http_version(msg))
            for name, value in msg.headers:
                lib.msc_add_n_request_header(tx, name, len(name), value, len(value))
            lib.msc_process_request_headers(tx)
            verdict = self._intervention(tx)
            if verdict is not None:
                return verdict
            if msg.body:
                lib.msc_append_request_body(tx, msg.body, len(msg.body))
            # always: phase 2 is where CRS adds up the anomaly score and blocks
            lib.msc_process_request_body(tx)
            return self._intervention(tx) or PeerVerdict(False, 0, "")
        finally:
            lib.msc_transaction_cleanup(tx)

    def _intervention(self, tx: int) -> PeerVerdict | None:
        it = _Intervention(status=200, pause=0, url=None, log=None, disruptive=0)
        disrupted = self._lib.msc_intervention(tx, ctypes.byref(it))
        log = ""
        if it.log:
            log = ctypes.string_at(it.log).decode("utf-8", "replace")
            self._free(it.log)
        if it.url:
            self._free(it.url)
        if not disrupted:
            return None
        return PeerVerdict(it.status == BLOCK_STATUS, it.status, log)

    # -- lifetime
    def close(self) -> None:
        if self._rules:
            self._lib.msc_rules_cleanup(self._rules)
            self._rules = None
        if self._msc:
            self._lib.msc_cleanup(self._msc)
            self._msc = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
