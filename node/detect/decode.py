"""Decoders: each undoes one encoding of a value, cheaply and in bounded work.

URL (`%XX`, double and mixed, `%uXXXX`, overlong / broken UTF-8), JS escapes (`\\uXXXX`,
`\\u{...}`, `\\xXX`, octal), HTML/XML entities (named, decimal, hex, without `;` where browsers
accept it), base64 / base64url (only when the result is printable text), the path-canonical
form (look-alike slashes, NUL, `0x2f` text). readings.py searches their combinations.
"""

from __future__ import annotations

import binascii
import functools
import html
import html.entities
import re
from collections.abc import Callable

def _needs_decode(text: str) -> bool:
    """Has a character that a decoding round acts on (% & \\ +): four substring tests run at
    memchr speed, where a regex class walks the text one character at a time."""
    return "%" in text or "&" in text or "\\" in text or "+" in text


_PCT_U_RE = re.compile(r"%u([0-9a-fA-F]{4})")
# multi-byte %-sequences: valid UTF-8 is left to the normal decoder; overlong or broken ones
# (%c0%ae, %e0%80%af, %f8%80%80%80%ae, %c0%qf ...) are how traversal fuzzers smuggle dots and
# slashes past filters, so they decode to the ASCII character they would become (low bits),
# and a broken one to a separator
MAX_LONE_BYTE_RUNS = 256
_LONE_BYTES_RE = re.compile("[\\udc80-\\udcff]+")  # regex escapes: mypyc's C literals hold no lone surrogate
_MULTIBYTE_RE = re.compile(
    r"%[cd][0-9a-f]%[0-9a-z]{2}|%e[0-9a-f](?:%[0-9a-z]{2}){2}|%f[0-7](?:%[0-9a-z]{2}){3}"
    r"|%f[89ab](?:%[0-9a-z]{2}){4}|%f[cd](?:%[0-9a-z]{2}){5}",
    re.I,
)
_HEX2 = frozenset("0123456789abcdefABCDEF")


def _multibyte(m: re.Match[str]) -> str:
    seq = m.group(0)
    pairs = seq[1:].split("%")
    if all(len(p) == 2 and p[0] in _HEX2 and p[1] in _HEX2 for p in pairs):
        raw = bytes(int(p, 16) for p in pairs)
        try:
            raw.decode("utf-8")
            return seq  # real text (e.g. %e4%b8%ad): leave it to url_decode
        except UnicodeDecodeError:
            pass
        low = int(pairs[-1], 16) & 0x3F
        code = low | ((int(pairs[0], 16) & 0x1F) << 6 if len(pairs) == 2 else 0)
        if chr(low) in "./\\" and chr(code) not in "./\\":
            code = low  # %c1%af: fuzzers mean "/" whatever the lead byte says
        ch = chr(code)
        if ch not in "./\\" and any(b < 0x80 for b in raw[1:]):
            # broken, not overlong, and no path character to a lenient decoder either: a
            # strict decoder keeps the ASCII bytes after the lead byte (%c9%3c is U+FFFD
            # then "<"), so they stay, to be decoded with the rest
            return "/" + "".join("%" + p for p in pairs[1:])
        if code < 0x20 or code > 0x7E:
            return "/"
        return ch
    # not escapes (%c0%qf): a separator for the lead byte, the rest stays as the backend keeps it
    return "/" + "".join("%" + p for p in pairs[1:])


# \uXXXX, \u{X...} (1-6 digits: ES6 code point escapes), \xXX, octal \ooo
_JS_ESC_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|u\{0*([0-9a-fA-F]{1,6})\}|x([0-9a-fA-F]{2})|([0-7]{3}))")
# html5 names valid without ';' (&lt, &amp, &copy...), longest first like html.unescape
_LEGACY_ENTITIES = sorted((k for k in html.entities.html5 if not k.endswith(";")), key=len, reverse=True)
_ENTITY_CANDIDATE_RE = re.compile(
    r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]{1,31};|(?:" + "|".join(_LEGACY_ENTITIES) + "))"
)
_ENTITY_RE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});?")
_NONPRINT_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
# the ASCII bytes of text: printable, tab and line breaks. They are the ASCII characters
# _NONPRINT_RE does not match and _printable_ratio counts, so deleting them from ASCII bytes
# answers both in one C pass (5x cheaper than the class walk on a decoded megabyte); they are
# also the ASCII characters that are not windows._CONTROLS
TEXT_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_B64_WHOLE_RE = re.compile(r"^[A-Za-z0-9+/_\-\s]{6,}={0,2}$")


def _lone_bytes(m: re.Match[str]) -> str:
    # a run of undecodable bytes (surrogate-escaped) -> one latin-1 character per byte
    return m.group(0).encode("utf-8", "surrogateescape").decode("latin-1")


MAX_CODEC_FAST_PATH = 4096


def url_decode(value: str) -> str:
    """One round of %XX / %uXXXX decoding; UTF-8 sequences are rebuilt when valid."""
    if "%" not in value:
        return value
    if len(value) <= MAX_CODEC_FAST_PATH and "%u" not in value and "%U" not in value and "\\" not in value:
        # the cheapest path for ordinary values, all in C: %XX becomes \xXX for the
        # unicode_escape codec (which keeps every other byte as is, as latin-1), and the bytes
        # are then read as UTF-8. Anything else (an invalid escape, a lone surrogate, invalid
        # UTF-8) raises, and the paths below decide. Not for long values: a failure there
        # would have cost a copy of the whole text (1 MB of '%': 20 ms)
        try:
            return value.replace("%", "\\x").encode().decode("unicode_escape").encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
    if not _has_pct_u(value):
        # fast path, all in C: the valid %XX decoded (unquote_bytes), the bytes read as UTF-8.
        # When they are valid UTF-8, every escaped lead byte in them starts a valid sequence,
        # so the repairing path's overlong/broken-sequence rewrite would change nothing, and
        # its result is this one (checked equal on generated values in the tests); anything
        # else (invalid UTF-8, %uXXXX, surrogate-escaped bytes) takes the repairing path
        try:
            return unquote_bytes(value.encode()).decode("utf-8")
        except UnicodeError:
            pass
    return url_decode_repairing(value)


_PCT_ESCAPE_RE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _class_table(classes: dict[str, str]) -> bytes:
    """A bytes.translate table: each byte of a key string becomes its value, any other byte
    becomes '.'."""
    table = bytearray(b"." * 256)
    for chars, cls in classes.items():
        for c in chars:
            table[ord(c)] = ord(cls)
    return bytes(table)


# The shape of a text as %-escapes see it, made in one C pass (bytes.translate): a substring
# test on it then says whether an escape regex can match at all, so a regex whose search
# restarts at every '%' (~50 ms on 1 MB of '%') only runs where it has something to change.
# Valid escapes: '%hh'.
_HEX_SHAPES = _class_table({"%": "%", "0123456789abcdefABCDEF": "h"})
# UTF-8 lead bytes (%c0-%ff: 'l'), other hex digits ('h'), other letters ('g'): _MULTIBYTE_RE
# needs '%l' and a hex digit then '%'; _BAD_ESCAPE_RE '%' and a letter pair with a non-hex one
_ESCAPE_SHAPES = _class_table({"%": "%", "cdefCDEF": "l", "0123456789abAB": "h", "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ": "g"})


# non-ASCII letters that re.IGNORECASE matches to an ASCII letter ([g-z] in _BAD_ESCAPE_RE)
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")


def _shapes(text: str, table: bytes) -> bytes:
    if not text.isascii():
        for c in _FOLDS_TO_ASCII:
            if c in text:
                text = text.replace(c, "k")  # a letter to the regexes too
    # surrogatepass: any str encodes; other non-ASCII characters are bytes >= 0x80, class '.'
    return text.encode("utf-8", "surrogatepass").translate(table)


def _has_hex_prefix(text: str) -> bool:
    """'0x' or '0X' in text ('x' first: see _has_pct_u)."""
    return ("x" in text and "0x" in text) or ("X" in text and "0X" in text)


def _has_pct_u(text: str) -> bool:
    # a one-character test first: a two-character one walks a run of '%' at every position
    return ("u" in text and "%u" in text) or ("U" in text and "%U" in text)


def unquote_bytes(data: bytes) -> bytes:
    """urllib's unquote_to_bytes (valid %XX decoded, anything else kept) in C-level steps only:
    its Python loop per '%' took 0.5 s on 1 MB of '%'. Backslashes are doubled, each valid %XX
    becomes \\xXX, and the unicode_escape codec decodes both (other bytes pass as latin-1, so
    .encode("latin-1") gives the bytes back)."""
    if b"%" not in data:
        return data
    shapes = data.translate(_HEX_SHAPES)
    if b"h" not in shapes or b"%hh" not in shapes:
        return data  # no valid escape: nothing to decode (one C pass, not a regex walk per '%')
    data = data.replace(b"\\", b"\\\\")
    if shapes.count(b"%") == shapes.count(b"%hh"):
        # every '%' starts a valid escape (two '%hh' cannot overlap): the substitution's result
        # without a match object per escape (a form of thousands of escapes)
        data = data.replace(b"%", b"\\x")
    else:
        data = _PCT_ESCAPE_RE.sub(rb"\\x\1", data)
    return data.decode("unicode_escape").encode("latin-1")


def url_decode_repairing(value: str) -> str:
    """url_decode's general path: overlong and broken sequences, %uXXXX, invalid UTF-8."""
    out = value
    shapes = _shapes(value, _ESCAPE_SHAPES)
    if b"l" in shapes and (b"%lh%" in shapes or b"%ll%" in shapes):
        out = _MULTIBYTE_RE.sub(_multibyte, value)
    if _has_pct_u(out):
        out = _PCT_U_RE.sub(lambda m: chr(int(m.group(1), 16)), out)
    if "%" not in out:
        return out
    try:
        data = out.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = out.encode("utf-8", "surrogatepass")
    raw = unquote_bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # UTF-8 where it is valid, one latin-1 character per invalid byte elsewhere
        text = raw.decode("utf-8", "surrogateescape")
        # bounded: binary data (a PDF upload) has thousands of runs; the first ones are where
        # an encoded payload would be, the rest stay as they are
        return _LONE_BYTES_RE.sub(_lone_bytes, text, count=MAX_LONE_BYTE_RUNS)


def _js_esc(m: re.Match[str]) -> str:
    hexa = m.group(1) or m.group(2) or m.group(3)
    if hexa:
        code = int(hexa, 16)
        return chr(code) if code <= 0x10FFFF else m.group(0)
    return chr(int(m.group(4), 8))


# _JS_ESC_RE needs a backslash then 'u', 'x' or an octal digit ('o')
_JS_ESC_SHAPES = _class_table({"\\": "\\", "u": "u", "x": "x", "01234567": "o"})


def js_unescape(value: str) -> str:
    if "\\" not in value:
        return value
    shapes = _shapes(value, _JS_ESC_SHAPES)
    if b"\\u" not in shapes and b"\\x" not in shapes and b"\\o" not in shapes:
        return value  # a backslash but no escape (a run of them costs one C pass, not a regex walk)
    return _JS_ESC_RE.sub(_js_esc, value)


def _entity(m: re.Match[str]) -> str:
    return html.unescape(m.group(0))


def entity_decode(value: str) -> str:
    """html.unescape's result, but its per-'&' callback (which tries every prefix of the
    following word) only runs where an entity can be: numeric references, names ending in
    ';', and the legacy names browsers accept without one. `a=1&b=2` costs no callback."""
    if "&" not in value:
        return value
    return _ENTITY_CANDIDATE_RE.sub(_entity, value)


def decode_round(value: str) -> str:
    return finish_round(url_decode(value))


def finish_round(url_decoded: str) -> str:
    """The rest of decode_round after its URL step: JS escapes, then entities."""
    return entity_decode(js_unescape(url_decoded))


def _printable_ratio(text: str) -> float:
    """The share of `text` that is printable or a line break or tab: in C passes (a Python step
    per character cost 18 ms on a megabyte of base64 decoded)."""
    if not text:
        return 0.0
    if text.isascii():
        bad = len(text.encode("ascii").translate(None, TEXT_ASCII))
        return (len(text) - bad) / len(text)
    good = sum(map(str.isprintable, text)) + text.count("\r") + text.count("\n") + text.count("\t")
    return good / len(text)


# base64 characters and the ASCII characters str regexes' \s matches
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_OR_SPACE = (_B64_ALPHABET + " \t\n\r\f\v\x1c\x1d\x1e\x1f").encode()
_B64_SHAPES = _class_table({_B64_ALPHABET: "b"})
_B64_RUN_SHAPE = b"b" * 14  # _B64_RUN


def _b64_whole(value: str) -> bool:
    """_B64_WHOLE_RE.match(value) without its backtracking walk: on ASCII text, by one
    bytes.translate (6+ base64 or space characters, at most two '=' at the end, and `$` may
    stand before a final newline); other text goes to the regex."""
    if not value.isascii():
        return _B64_WHOLE_RE.match(value) is not None
    if value.endswith("=\n"):
        value = value[:-1]
    core = value.rstrip("=")
    return len(value) - len(core) <= 2 and len(core) >= 6 and not core.encode().translate(None, _B64_OR_SPACE)


def b64_decode(token: str) -> str | None:
    """Decoded text of a base64/base64url token, or None when it is not printable text."""
    t = token.strip()
    if len(t) < 6:  # `KikoJik` is `*)(&)`: a short probe is a whole attack
        return None
    if not t.isascii():
        return None
    if not t.encode("ascii").isalnum():  # (ASCII: a table walk, 5x cheaper than str's Unicode one)
        t = "".join(t.split())
    return b64_token(t)


_URLSAFE_TO_STD = str.maketrans("-_", "+/")


def b64_token(t: str) -> str | None:
    """b64_decode of a token already made only of base64 (either alphabet) and '=' characters."""
    if len(t.rstrip("=")) % 4 == 1:
        return None  # no base64 has this length: skip the exception
    if "-" in t or "_" in t:
        t = t.translate(_URLSAFE_TO_STD)
    t += "=" * (-len(t) % 4)
    try:
        # base64.b64decode(t, validate=True) without its Python-level argument handling
        raw = binascii.a2b_base64(t, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if raw.isascii():
        text = raw.decode("ascii")
        if not raw.translate(None, TEXT_ASCII):
            return text  # _NONPRINT_RE finds nothing
    else:
        # most tokens that are not base64 of text end here: without raising (an exception
        # per token costs more than the decoding)
        text = raw.decode("utf-8", "replace")
        if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
            return None
    # trailing NULs are the null-byte terminator trick (`...))%00`), not a sign of binary data
    if _NONPRINT_RE.search(text) and _printable_ratio(text.rstrip("\x00")) < 0.95:
        return None
    return text


SHORT_B64_MIN = 4  # three bytes: `O2lk` is `;id`
_PROBE_PUNCTUATION = frozenset("!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~")


@functools.lru_cache(maxsize=4096)  # short keys and values repeat (a JSON array's objects share keys)
def short_b64_text(value: str) -> str | None:
    """What a short [\\w-] value decodes to as base64, when it reads as text holding the
    punctuation a probe needs (`O2lk` is `;id`, `KikoJik` is `*)(&)`); else None. The engine
    dismisses other short [\\w.-] values unjudged (and trivial.py in bulk). Only a mixed-case
    value is decoded, so that the bulk passes can still dismiss the rest by a regex: 9 in 10
    base64 forms of 3-5 punctuated characters mix cases, and the classic probes all do; one in a
    single case (`ITNO` is `!3N`) stays unjudged (docs/detection.md, "Limits")."""
    if len(value) < SHORT_B64_MIN or not value.isascii() or "." in value:
        return None
    if value.lower() == value or value.upper() == value:
        return None
    text = _b64_ascii_text(value)
    return None if text is None or _PROBE_PUNCTUATION.isdisjoint(text) else text


def _b64_ascii_text(value: str) -> str | None:
    """An unpadded base64/base64url token decoded, when that is printable ASCII and line breaks
    (`OwppZDs` is `;\nid;`); else None."""
    if len(value) % 4 == 1:
        return None  # no base64 has this length
    t = value.translate(_URLSAFE_TO_STD) if "-" in value or "_" in value else value
    try:
        raw = binascii.a2b_base64(t + "=" * (-len(t) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return None if raw.translate(None, TEXT_ASCII) else raw.decode("ascii")


CACHED_TEXT_CHARS = 256


def memoised_for_short(decoder: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """`decoder` with its answers for texts of up to CACHED_TEXT_CHARS kept (the 4,096 latest):
    the same ids, keys and beacon fields come again in one request's fields and readings, and
    request after request (on the benign corpus's slowest requests, 6 of 10 token decodings
    were repeats)."""
    cached = functools.lru_cache(maxsize=4096)(decoder)

    def memoised(text: str) -> str | None:
        return cached(text) if len(text) <= CACHED_TEXT_CHARS else decoder(text)

    memoised.cache_clear = cached.cache_clear  # type: ignore[attr-defined]  # benchmarks start cold
    return memoised


def upper_b64_text(value: str) -> str | None:
    """What an upper-case [\\w-] token (letters, digits, no lower case) decodes to as base64,
    when that is text with a space or punctuation (`J09SREVSIEJZIDI4` is `'ORDER BY 28`); else
    None. The engine dismisses a long one-case token as an id or a word, and the readings' base64
    search wants mixed case: upper-case text encodes to upper case often enough to be a way in.
    Each group of four starts with a letter: its first character holds the top six bits of a
    byte, under 32 for ASCII, which is A-Z (or a-f, lower case: not this token) in base64."""
    if len(value) % 4 == 1 or not value.isascii() or value.isdigit() or not value[::4].isalpha() \
            or value.upper() != value:
        return None
    return _upper_b64(value)


def _upper_text(value: str) -> str | None:
    text = _b64_ascii_text(value)
    return text if text is not None and (" " in text or not _PROBE_PUNCTUATION.isdisjoint(text)) else None


_upper_b64 = memoised_for_short(_upper_text)


_BAD_ESCAPE_RE = re.compile(r"%(?:[g-z][0-9a-z]|[0-9a-f][g-z])", re.I)
_PRIVATE_USE_RE = re.compile("[\ue000-\uf8ff]")
_PATHISH_PAIRS = (
    ("\x00", ""), ("\u2215", "/"), ("\uff0f", "/"), ("\u2044", "/"), ("\uff3c", "\\"), ("\u2216", "\\"),
    ("\ufe68", "\\"), ("\uff0e", "."), ("\u2024", "."), ("\u3002", "."),
)
_PATHISH_RE = re.compile("[\x00\u2215\uff0f\u2044\uff3c\u2216\ufe68\uff0e\u2024\u3002\ue000-\uf8ff%]|0[xX](?:2[efEF]|5[cC])")
_HEX_TEXT_RE = re.compile(r"0x(2f|5c|2e)", re.I)
_HEX_TEXT_MAP = {"2f": "/", "5c": "\\", "2e": "."}


def _pathish(text: str) -> bool:
    """_PATHISH_RE.search(text). ASCII text can only hold its NUL, '%' and '0x..' members,
    which substring tests find far faster than the regex (a walk of ~8 ms per MB)."""
    if text.isascii():
        if "%" in text or "\x00" in text:
            return True
        if not _has_hex_prefix(text):
            return False
        low = text.lower()  # ASCII: the regex's 0[xX](2[efEF]|5[cC]) as three substring tests
        return "0x2e" in low or "0x2f" in low or "0x5c" in low
    return _PATHISH_RE.search(text) is not None


def path_canonical(value: str) -> str:
    """Traversal fuzzers' disguises undone: NUL bytes, `0x2f`-style text hex, look-alike
    slashes and dots (fullwidth, division slash...)."""
    out = value
    for char, repl in _PATHISH_PAIRS:  # str.replace per character present: C speed
        if char in out:
            out = out.replace(char, repl)
    if not out.isascii() and _PRIVATE_USE_RE.search(out):
        out = _PRIVATE_USE_RE.sub("/", out)  # IIS %uF025-style separators
    if "%" in out:
        shapes = _shapes(out, _ESCAPE_SHAPES)
        if b"g" in shapes and (b"%g" in shapes or b"%hg" in shapes or b"%lg" in shapes):
            out = _BAD_ESCAPE_RE.sub("/", out)  # %bg%qf: broken escapes used as separators
    if _has_hex_prefix(out):
        out = _HEX_TEXT_RE.sub(lambda m: _HEX_TEXT_MAP[m.group(1).lower()], out)
    return out


# anything that makes an escape round (decode_round) or path_canonical() find something
_DECODE_CHARS = "[%&\\\\+\xa0\x00\u2215\uff0f\u2044\uff3c\u2216\ufe68\uff0e\u2024\u3002\ue000-\uf8ff]|0[xX]"
_DECODABLE_RE = re.compile(_DECODE_CHARS)
# ... or a base64 token readings.py would try (it skips tokens shorter than 16 characters)
_B64_RUN = "[A-Za-z0-9+/_\\-]{14,}"
_DECODABLE_B64_RE = re.compile(_DECODE_CHARS + "|" + _B64_RUN)
_B64_RUN_RE = re.compile(_B64_RUN)  # what _has_b64_run answers (tests compare the two)


def _has_b64_run(value: str) -> bool:
    """_B64_RUN_RE.search(value) (what _decodable(value, True) adds to _decodable(value,
    False)) in two C passes: every character past ASCII encodes to bytes of no base64 class,
    so a run of 14 base64 characters is a run of 14 such bytes (the regex walk: 10 ms per MB)."""
    return _B64_RUN_SHAPE in value.encode("utf-8", "surrogatepass").translate(_B64_SHAPES)


def _decodable(value: str, try_base64: bool) -> bool:
    """_DECODABLE_B64_RE.search(value) (_DECODABLE_RE without base64). On ASCII text, where
    only NUL, % & \\ + and '0x' of _DECODE_CHARS can occur, by substring tests first."""
    if not value.isascii():
        return (_DECODABLE_B64_RE if try_base64 else _DECODABLE_RE).search(value) is not None
    if _needs_decode(value) or "\x00" in value or _has_hex_prefix(value):
        return True
    return try_base64 and _has_b64_run(value)
