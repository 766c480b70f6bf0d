"""Decoding as a search: every plausible reading of a value, layered, within bounds.

A value (path, parameter, header, cookie, form field, multipart part, JSON or XML leaf) is
judged as it is and under each reading that decodes cleanly:

* escapes, undone round after round until nothing changes (at most MAX_ROUNDS): URL (`%XX`,
  `%uXXXX`, overlong UTF-8), JS (`\\uXXXX`, `\\u{...}`, `\\xXX`, octal), HTML/XML entities
  (named, decimal, hex, without `;` where browsers accept it); see decode.decode_round;
* structural layers, each reading then unescaped in its turn: base64 / base64url (padded or
  not; the whole value, or its long tokens; in a path its segments and the run after each
  slash, since base64 holds '/'), a JSON document serialized into the value (its strings,
  keys included), a JSON string literal (`"\\u003c..."`), an XML or SOAP text (its text nodes,
  CDATA and attribute values);
* a text with compatibility forms that make ASCII syntax (fullwidth `＜ｓｃｒｉｐｔ＞`, `‥`,
  mathematical letters) is read as its NFKC fold, in its place for the text analysers
  (Readings.folded_away; _folded says which texts ask for it);
* every unescaped reading without its NUL bytes, and its path-canonical form (look-alike
  slashes and dots, `0x2f` text, NUL): what a path or host normalising layer sees, so that
  one is listed apart (Readings.canonical) and read by the path and host analysers only
  (engine.CANONICAL_READERS).

A reading is kept only when its decoding is clean (base64 that decodes to mostly printable
UTF-8 text, JSON that parses, XML that closes a tag), so tokens, hashes and images do not
multiply the work or the false positives. Several pieces of one layer (the base64 tokens of
a text, the strings of a JSON document) beyond the first few make one reading, joined by
windows.PIECE_SEPARATOR, a control character no signature's `\\s*` spans (the analysers, which
read control characters as spaces, read it as one): the number of readings depends on the
layers, not on the value's size.

Bounds: MAX_LAYERS structural layers, MAX_ROUNDS escape rounds per reading, MAX_FORMS
readings, and WORK_BASE + WORK_FACTOR x len(value) characters of readings in all. Every
decoder is linear (C passes, or one Python step per token), so the total cost is linear in the
value. Reaching a bound while something was still left to decode sets `Readings.cut`: the
engine then marks the verdict partial ("decode"), never silently clean.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from node.detect import c_helper, decode, json_scan, xml_scan
from node.detect.windows import PIECE_SEPARATOR

MAX_LAYERS = 4  # base64 / JSON / XML layers stacked on one reading
MAX_ROUNDS = 8  # escape rounds (URL, JS, entities) on one reading
MAX_FORMS = 48  # readings of one value, the value itself included
SEPARATE_PIECES = 6  # pieces of one layer (JSON strings, base64 tokens) read alone; the rest together
WORK_FACTOR = 8  # characters of readings per character of the value ...
WORK_BASE = 64 * 1024  # ... plus this many
MAX_PATH_SUFFIXES = 16  # a path is read as base64 from after each of its first this many slashes
MAX_XML_TOKENS = 10_000  # tokens of an XML text inside a value walked (not of a body: request.py)
MAX_JSON_NODES = 50_000  # nodes of a JSON document inside a value walked
# readings longer than this get no path-canonical form (a copy that differs mostly where a
# date format's `%Y-%m` became slashes): a traversal has no reason to hide in 64 KiB of text
MAX_CANONICAL = 64 * 1024


_NO_FORMS: frozenset[str] = frozenset()  # (one empty set for every Readings that has none)


@dataclass(slots=True)
class Readings:
    forms: list[str]  # the value first, then each distinct reading
    cut: bool  # a bound was reached with something left to decode
    # the forms that are only a path-canonical copy of another form (look-alikes mapped to
    # '/', '.', '\\'; NUL dropped): a copy of Chinese prose where each '。' became '.'
    canonical: frozenset[str] = _NO_FORMS
    # the forms whose NFKC fold is a form too (_folded): the text analysers read the fold
    # instead, which has every ASCII character of the text (the fold keeps them) and what the
    # fold made; the signatures and the host analyser read both
    folded_away: frozenset[str] = _NO_FORMS


def variants(value: str, kind: str = "query") -> list[str]:
    """The value and its distinct readings (readings(value, kind).forms)."""
    return readings(value, kind).forms


# a backslash the JS step takes as an octal or `\x` escape, where a backend that stops before
# it keeps the backslash and the digits (`\127` of a host, `\x2e` of a path)
_EATEN_BACKSLASH_RE = re.compile(r"\\[0-7xX]")


def _start(text: str) -> str:
    """The first character that is not white space ('' for none), without copying a long text."""
    first = text[:1]
    if not first.isspace():
        return first
    return text[:64].lstrip()[:1] or text.lstrip()[:1]


def readings(value: str, kind: str = "query") -> Readings:
    """Every clean reading of a `kind` field's `value` (request.FieldSink's kinds), within the
    bounds above. A path is searched for base64 segment by segment; a body is not read as a
    JSON or XML document here: request.py parsed it as one when it is shaped like one (its
    strings and nodes are fields of their own), and what it could not parse fails here too."""
    path = kind == "path"
    if not value.isascii() and _folded(value) is not None:
        return _Search(value, path, kind != "body").run()  # a fold to read (_Search.children)
    if path:
        if not (decode._decodable(value, False) or _start(value) in _OPENERS):
            # no escapes, no document: only a tail or base64 can be read, which most paths
            # (plain names, hex ids) have not; looked for here without a search's set-up
            if not _path_tail(value) and not (value.lower() != value and _path_base64(value, set())):
                return Readings([value], False)
    elif _only_base64_below(value):
        # the search would find the value itself unescaped, no JSON or XML, then these pieces;
        # most values with words, URLs or ids have none, and get no search's set-up
        tried: set[str] = set()
        pieces = _base64_pieces(value, tried)
        if not pieces:
            return Readings([value], False)
        search = _Search(value, path, kind != "body")
        search.tried = tried
        return search.run(_grouped(pieces))
    return _Search(value, path, kind != "body").run()


def _only_base64_below(text: str) -> bool:
    """No escape and no JSON or XML start in `text` (not a path): base64 is the only reading
    it can have."""
    return not decode._decodable(text, False) and _start(text) not in _OPENERS


def _compat_ascii() -> frozenset[str]:
    """The characters NFKC changes into something with a visible ASCII character (fullwidth and
    small forms, letter-like symbols, superscripts, ligatures, mathematical letters, enclosed
    digits...). CJK ideographs, Hangul syllables and the planes past U+1FFFF (ideographs, and
    compatibility ideographs that fold to ideographs) have no such fold: not looked at (8 ms
    at import). Nor is Latin-1 (`ª º ¹ ² ½`): what NFKC makes of it is a digit or a letter, no
    syntax, and mojibake (binary read as Latin-1) is full of it."""
    found = set()
    for cp in itertools.chain(range(0x100, 0x4E00), range(0xA000, 0xAC00), range(0xD7A4, 0xD800), range(0xE000, 0x20000)):
        char = chr(cp)
        folded = unicodedata.normalize("NFKC", char)
        if folded != char and not folded.isspace() and any(c < "\x7f" for c in folded):
            found.add(char)
    return frozenset(found)


def _ranges_of(chars: list[str]) -> str:
    """The body of a regex class of ranges: sre tests a character of the Basic Multilingual
    Plane by a bitmap (a class with one past U+FFFF is tested range by range: ~10 ns a
    character)."""
    ranges: list[list[int]] = []
    for cp in sorted(map(ord, chars)):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)


_COMPAT = _compat_ascii()
# Chinese and Japanese prose write these between words all the time, and JSON and HTML put a
# quote, a backslash or a tag bracket after them (`备案吗？"`, `>（如：`); there their fold
# makes no syntax anyone parses. A text whose only such characters stand so is not folded:
# the analysers would read all of it again in the fold's place (a CJK beacon 10-30% dearer to
# the path analyser: `／`, `：`). Next to another ASCII character, another fold or a text's end
# they ask for it (`alert（1）`, `；cat`, `1，2`)
_PROSE_PUNCT = "，（）：；！？～…／"
_PROSE_NEIGHBOURS = f"\"\\\\<>\\s\\u2e80-\\uffff"
_OTHER_COMPAT_RE = re.compile(f"[{_ranges_of([c for c in _COMPAT if ord(c) <= 0xFFFF and c not in _PROSE_PUNCT])}]")
_PROSE_ASKS_RE = re.compile(f"[{_PROSE_PUNCT}][^{_PROSE_NEIGHBOURS}]")
_ASKS_PROSE_RE = re.compile(f"[^{_PROSE_NEIGHBOURS}][{_PROSE_PUNCT}]")


def _asks_fold(text: str) -> bool:
    """Has `text` a character whose fold can make ASCII syntax? A compatibility form other
    than prose punctuation, a character past U+FFFF (mathematical letters: NFKC decides), or
    prose punctuation at an end or beside an ASCII character other than a quote, backslash,
    tag bracket or white space. Class searches sre runs in C, and substring tests."""
    if _OTHER_COMPAT_RE.search(text) or len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text):
        return True  # (past U+FFFF: two UTF-16 units)
    if not any(p in text for p in _PROSE_PUNCT):
        return False  # most text that NFKC would change: Latin-1 (`é`, mojibake)
    return bool(text[0] in _PROSE_PUNCT or text[-1] in _PROSE_PUNCT
                or _PROSE_ASKS_RE.search(text) or _ASKS_PROSE_RE.search(text))


_U_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _escapes_a_fold(document: str) -> bool:
    """A `\\uXXXX` escape in `document` writes a compatibility form, or a surrogate."""
    if "\\u" not in document:
        return False
    for digits in set(_U_ESCAPE_RE.findall(document)):
        char = chr(int(digits, 16))
        if char in _COMPAT or 0xD800 <= ord(char) <= 0xDFFF:
            return True
    return False


@functools.lru_cache(maxsize=16)  # a value's search asks for its fold, then its first layer does
def _folded(text: str) -> str | None:
    """NFKC of `text` when it has a fold that can make ASCII syntax (fullwidth
    `＜ｓｃｒｉｐｔ＞`, `％３Ｃ`, `‥`, `𝐣𝐚𝐯𝐚𝐬𝐜𝐫𝐢𝐩𝐭`: what IIS's best-fit mapping,
    NFKC-normalising frameworks and some databases read); None for most text, which NFKC's
    quick check passes in one C pass. NFKC itself runs in C (~40 ns a character of CJK text
    it changes, where a substitution calling back per fullwidth character took ~250)."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text) or not _asks_fold(text):
        return None
    folded = unicodedata.normalize("NFKC", text)
    return folded if folded != text else None


# first characters of a JSON document, a JSON string literal, an XML text
_OPENERS = ("{", "[", '"', "<")


class _Search:
    __slots__ = ("forms", "seen", "budget", "cut", "path", "documents", "tried", "canonical", "folded_away",
                 "fold_free")

    def __init__(self, value: str, path: bool, documents: bool) -> None:
        self.documents = documents  # the value itself may be read as a JSON or XML document
        self.tried: set[str] = set()  # base64 tokens decoded already (a nested reading repeats them)
        self.forms = [value]
        self.seen = {value}
        self.budget = WORK_BASE + WORK_FACTOR * len(value)
        self.cut = False
        self.path = path
        self.canonical: set[str] = set()
        self.folded_away: set[str] = set()
        # texts with nothing left to fold: found so, folds, and the strings of such a JSON
        # document without `\u` escapes (what they hold the document held): not looked at again,
        # since the scan of a long CJK text is most of what a fold costs
        self.fold_free: set[str] = set()

    def add(self, text: str) -> bool:
        """Keep a new reading; False when it was known already or a bound refused it."""
        if text in self.seen:
            self.canonical.discard(text)  # a decoding reads it too: no mere path-canonical copy
            return False
        if len(self.forms) >= MAX_FORMS or len(text) > self.budget:
            self.cut = True
            return False
        self.budget -= len(text)
        self.seen.add(text)
        self.forms.append(text)
        return True

    def run(self, first: list[str] | None = None) -> Readings:
        """`first`: the value's own children (layer 0), when the caller found them already."""
        frontier = [self.forms[0]]
        for layer in range(MAX_LAYERS + 1):
            nxt: list[str] = []
            for text in frontier:
                for child in first if layer == 0 and first is not None else self.children(text, layer):
                    if child in self.seen:
                        self.canonical.discard(child)
                        continue
                    if layer == MAX_LAYERS:
                        self.cut = True  # one more layer would decode: not judged
                        break
                    if self.add(child):
                        nxt.append(child)
                if self.cut and (len(self.forms) >= MAX_FORMS or self.budget <= 0):
                    return self._found()
            if not nxt:
                break
            frontier = nxt
        return self._found()

    def _found(self) -> Readings:
        return Readings(self.forms, self.cut, frozenset(self.canonical), frozenset(self.folded_away))

    def children(self, text: str, layer: int) -> list[str]:
        """The readings one layer down. A text that is a JSON document is read as its strings
        only: each of them is unescaped and searched in its turn, so the document's own
        unescaped copy (and its base64 tokens, the strings' tokens) would judge the same
        text again, at the size of the whole document."""
        folded = None if text.isascii() else self._fold(text)  # (the flag: no call for most text)
        if folded is not None:
            self.folded_away.add(text)
            # compatibility forms folded (_folded), then searched in their turn (the escapes
            # the fold made: `％３Ｃ`) instead of the text: NFKC keeps ASCII as it is, so what
            # the text's layers decode the fold's decode too, and a text with folds (Chinese
            # prose and its `，（）；`) is not searched twice
            return [folded]
        if layer or not self.path:
            # nothing a decoder here would change (no escape, no base64 shape, no JSON or XML
            # start), and _only_base64_below(text): one escape test and one opener test for both
            escapes = decode._decodable(text, False)
            opener = _start(text) in _OPENERS
            if layer and not (escapes or opener or decode._has_b64_run(text) or decode._b64_whole(text)):
                return []  # a plain piece (a word, a sentence): nothing below it
            if not escapes and not opener:
                return _grouped(_base64_pieces(text, self.tried))
        doc = _json_strings_of(text, self) if self.documents or layer else None
        if doc is not None:
            return self._pieces_of(text, _grouped(doc))
        return _layer_readings(text, self.unescaped(text), layer, self)

    def _fold(self, text: str) -> str | None:
        """_folded(text), unless the search knows `text` has nothing to fold."""
        if text in self.fold_free:
            return None
        folded = _folded(text)
        self.fold_free.add(text if folded is None else folded)
        return folded

    def _pieces_of(self, document: str, pieces: list[str]) -> list[str]:
        """A JSON document's strings: fold-free when it is, unless one of its `\\uXXXX`
        escapes writes a character the fold changes (or half of one past U+FFFF)."""
        if self.fold_free and document in self.fold_free and not _escapes_a_fold(document):
            self.fold_free.update(pieces)
        return pieces

    def unescaped(self, text: str) -> str:
        """`text` with its escapes undone (kept as a reading), and its path-canonical form."""
        cur = text
        for round_ in range(MAX_ROUNDS):
            if not decode._needs_decode(cur):
                break
            if round_ == 0:
                # what a backend's framework hands on: percent-decoded once, a reading of its own
                # when the JS step then eats a backslash of it (`http%3A%5C%5C127.1`: `\\127` -> `W`)
                once = decode.url_decode(cur)
                nxt = decode.finish_round(once)
                if once != cur and _EATEN_BACKSLASH_RE.search(once) and once != nxt:
                    self.add(once)
            else:
                nxt = decode.decode_round(cur)
                if nxt != cur and _EATEN_BACKSLASH_RE.search(cur):
                    # a round's result is a reading too when the next round eats a backslash of it: a
                    # backend decodes a set number of times (`&#x5c;&#x5c;127.1` -> `\\127.1` -> `\W.1`);
                    # a `\uXXXX` the next round decodes reads the same either way
                    self.add(cur)
            if nxt == cur:
                break
            cur = nxt
        else:
            if decode._needs_decode(cur) and decode.decode_round(cur) != cur:
                self.cut = True  # escapes nested deeper than MAX_ROUNDS
        if "\xa0" in cur:
            cur = cur.replace("\xa0", " ")  # no-break space: white space to SQL and shells
        self.add(cur)
        folded = None if cur.isascii() else self._fold(cur)  # `%EF%BC%9C`: the fold of what the escapes were
        if folded is not None:
            # read in place of `cur` from here: its NUL-free and path-canonical copies, and
            # the structural readings the caller finds in it
            self.folded_away.add(cur)
            self.add(folded)
            cur = folded
        if "\x00" in cur:
            # NUL bytes dropped (a filter or a C string function does): a reading for every
            # analyser (`onfocus\0=`), where the look-alikes below are one for paths and hosts
            self.add(cur.replace("\x00", ""))
        if (len(cur) <= MAX_CANONICAL or self.path) and decode._pathish(cur):
            canonical = decode.path_canonical(cur)
            if self.add(canonical):
                self.canonical.add(canonical)
        return cur


def _layer_readings(raw: str, plain: str, layer: int, search: _Search) -> list[str]:
    """The structural readings of one reading that is not JSON (`raw`, and `plain`, its
    unescaped form) at `layer` (0: the value itself)."""
    pieces: list[str] = []
    # JSON once unescaped (%7B%22...)
    doc = _json_strings_of(plain, search) if plain != raw and (search.documents or layer) else None
    if doc is not None:
        pieces += doc
    elif search.documents or layer:
        for text in (raw, plain) if raw != plain else (raw,):
            found = _xml_texts(text)
            if found:
                pieces += found
                break  # the raw text parsed: its unescaped form is the same document, broken
    if layer == 0 and search.path:
        tail = _path_tail(plain)
        if tail:
            pieces.append(tail)
        pieces += _path_base64(plain, search.tried)
    else:
        pieces += _base64_pieces(plain, search.tried)
    if doc is not None and len(pieces) == len(doc):
        return search._pieces_of(plain, _grouped(pieces))  # only the document's strings
    return _grouped(pieces)


def _grouped(pieces: list[str]) -> list[str]:
    """Pieces of one layer as readings: the first SEPARATE_PIECES that may carry something on
    their own are read alone (a JSON string is judged as a whole value is: `1 or 1=1` at its
    start, a base64 token as a whole value), the rest joined into one reading, so the count
    of readings stays small. They are joined by PIECE_SEPARATOR."""
    if len(pieces) <= 1:
        return [p for p in pieces if p]
    alone: list[int] = []
    for i, piece in enumerate(pieces):  # stops at the SEPARATE_PIECES-th: no step per piece
        if piece and _alone(piece):
            alone.append(i)
            if len(alone) == SEPARATE_PIECES:
                break
    if not alone:
        return [PIECE_SEPARATOR.join(filter(None, pieces))]
    taken = set(alone)
    rest = [p for i, p in enumerate(pieces) if p and i not in taken]
    return [pieces[i] for i in alone] + ([PIECE_SEPARATOR.join(rest)] if rest else [])


def _alone(piece: str) -> bool:
    """Not a plain word: has a character other than a letter or digit, or may be base64."""
    return not piece.isalnum() or (len(piece) >= 8 and _worth(piece))


# a segment with a character that route names and matrix or date parameters do not use, and
# injections do (quotes, brackets, white space, shell and template syntax): one C pass
_ODD_CHAR = r"[\s'\"<>()|&$\\{}\[\]`^;]"
_ODD_SEGMENT_RE = re.compile(rf"/[^/{_ODD_CHAR[1:-1]}]*{_ODD_CHAR}")
# the ASCII characters that are not odd ones: deleting them from an ASCII path leaves nothing
# when it has none (one C pass; the regex walk costs 4x more on the paths most requests have)
_NOT_ODD_ASCII = bytes(c for c in range(128) if not re.fullmatch(_ODD_CHAR, chr(c)))


def _path_tail(path: str) -> str | None:
    """The path from its first segment that is not a plain name on: what a catch-all route
    (`/files/<path:rest>`) hands the application, and where a payload starts (`1) AND ...`
    is judged at its start, not after `/api/v1/files/`)."""
    if path.isascii() and not path.encode("ascii").translate(None, _NOT_ODD_ASCII):
        return None
    m = _ODD_SEGMENT_RE.search(path)
    if m is None or m.start() == 0:
        return None
    return path[m.start() + 1 :]


# ---------------------------------------------------------------------------- base64

# 14 characters and its padding make the 16 a token needs (`L2V0Yy9wYXNzd2Q=`, /etc/passwd);
# a token starts where a run of base64 characters does (the lookbehind: no match is tried
# again from inside a run shorter than 14, which findall did at each of its characters)
_B64_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{14,}={0,2}")
# a path's tokens (runs of 8+ base64 characters) with what stands before and after each: '/'
# or nothing, in a path given a '/' at both ends (a token is a whole segment when both are
# '/'); findall hands the three strings over in one C pass, the lookahead leaves the '/' after
# a token to start the next one
_B64_SEGMENT_RE = re.compile(r"(/?)([A-Za-z0-9+_\-]{8,}={0,2})(?=(/?))")
_HEXISH_RE = re.compile(r"[0-9a-fA-F\-]+")
_B64_PATH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-="


def _worth(token: str) -> bool:
    """A token that may be base64 of text: one-case or capitalized words, numbers, hex ids
    and hashes are not tried (base64 of text mixes cases, and may be all letters:
    `fGxccyAtbGEgLyAj`)."""
    if token.isalpha():
        return not (token.islower() or token.isupper() or token[1:].islower())
    return not (token.isdigit() or _HEXISH_RE.fullmatch(token))


_token_decoded = decode.memoised_for_short(decode.b64_token)


def _tokens_decoded(text: str, tried: set[str]) -> list[str]:
    """The base64 tokens of `text` decoded: those of 16 characters or more (padding included)
    with an upper-case letter (base64 of text has one in any 8 characters but by rare chance),
    each once per search, when the decoding is not a mere word."""
    out: list[str] = []
    for tok in _b64_candidates(text):
        if (d := _decoded_once(tok, tried)) and not d.isalnum():
            out.append(d)
    return out


def _b64_candidates_py(text: str) -> list[str]:
    """The tokens _tokens_decoded decodes (each once; not yet minus those of `tried`): runs of
    14 base64 characters or more and their padding, 16 characters in all, worth a try."""
    # a token needs 16 characters, and a run of 14 base64 characters: C passes find whether
    # there is one, before any regex walk (most readings have none)
    if len(text) < 16 or not decode._has_b64_run(text):
        return []
    return [tok for tok in dict.fromkeys(_B64_TOKEN_RE.findall(text))
            if len(tok) >= 16 and _worth_trying(tok)]


def _segment_tokens_decoded(path: str, tried: set[str]) -> list[str]:
    """_tokens_decoded for a path: a token that is a whole segment is read as a whole value is
    (8 characters or more, any decoding); one inside a segment from 16 characters on."""
    out: list[str] = []
    for before, tok, after in _B64_SEGMENT_RE.findall(f"/{path}/"):
        whole = bool(before and after)
        if (whole or len(tok) >= 16) and (d := _first_decoding(tok, tried)) and (whole or not d.isalnum()):
            out.append(d)
    return out


# _b64_candidates_py in one C pass, less the tokens whose decoding cannot be text (_b64scan.c),
# when node/detect is compiled (node/detect/__init__.py: not when it runs from its sources)
_B64SCAN = c_helper("_b64scan")
_b64_candidates: Callable[[str], list[str]] = _B64SCAN.text_tokens if _B64SCAN is not None else _b64_candidates_py


def _worth_trying(tok: str) -> bool:
    """A token that may be base64 of text: an upper-case letter, and _worth (_b64scan.c's
    worth() is this test)."""
    return tok.lower() != tok and _worth(tok)


def _first_decoding(tok: str, tried: set[str]) -> str | None:
    """`tok` decoded, the first time the search meets it (`tried`), when it may be base64 of
    text (_worth_trying); else None."""
    return _decoded_once(tok, tried) if _worth_trying(tok) else None


def _decoded_once(tok: str, tried: set[str]) -> str | None:
    """`tok` decoded, the first time the search meets it (`tried`); else None."""
    if tok in tried:
        return None
    tried.add(tok)
    return _token_decoded(tok)


def _base64_pieces(text: str, tried: set[str]) -> list[str]:
    """The whole text as base64, else its base64 tokens decoded (those not in `tried`)."""
    if text[:1] != "/" and PIECE_SEPARATOR not in text and decode._b64_whole(text) and _worth(text.strip()):
        d = _whole_decoded(text)
        if d:
            return [d]
    return _tokens_decoded(text, tried)


def _whole_decoded(text: str) -> str | None:
    """decode.b64_decode(text) of a text _b64_whole accepted; a short one without white space
    is a token, and its decoding comes from the cache (a JSON key such as `serviceType` comes
    again at other locations, which the verdict cache keeps apart)."""
    if 6 <= len(text) <= decode.CACHED_TEXT_CHARS and " " not in text and text.isascii() and text.isprintable():
        return _token_decoded(text)
    return decode.b64_decode(text)


def _base64_run(path: str) -> str:
    """The run of base64 characters ('/' included) that ends the path."""
    return path[len(path.rstrip(_B64_PATH_CHARS)):]


def _worth_run(run: str) -> bool:
    """A run worth reading after its slashes: a slash inside, 12+ characters, upper case."""
    return len(run) >= 13 and "/" in run[1:] and run.lower() != run


def _path_base64(path: str, tried: set[str]) -> list[str]:
    """Base64 in a URL path: in a segment (a token without '/'), or the run of base64
    characters that ends the path, read from after any of its slashes (base64 holds '/',
    and a catch-all route hands the rest of the path to the application)."""
    if path.lower() == path:
        return []  # base64 of text has upper-case letters (every token tried below has one)
    pieces = _segment_tokens_decoded(path, tried)
    run = _base64_run(path)
    if not _worth_run(run):
        return pieces
    # suffixes that start after one of the path's first MAX_PATH_SUFFIXES slashes (a route's
    # fixed prefix is shorter: what a catch-all route hands on starts there), within the run,
    # and hold a slash; only one whose first 16 characters decode as text is decoded whole
    offset = len(path) - len(run)
    starts: list[int] = []
    pos = path.find("/")
    for _ in range(MAX_PATH_SUFFIXES):
        if pos < 0:
            break
        if pos + 1 >= offset:
            starts.append(pos + 1 - offset)
        pos = path.find("/", pos + 1)
    if offset == 0 and run[:1] != "/":
        starts.insert(0, 0)
    for start in starts:
        head = run[start : start + 16]
        if len(head) < 16 or head[:1] == "/" or head.lower() == head or run.find("/", start) < 0:
            continue
        if decode.b64_token(head):
            d = decode.b64_token(run[start:])
            if d and not d.isalnum():
                pieces.append(d)
    return pieces


# ---------------------------------------------------------------------------- JSON and XML

def _json_strings_of(text: str, search: _Search) -> list[str] | None:
    """A JSON document serialized in the text: its strings (values first, then keys); a JSON
    string literal: its text. None when the text is not one JSON document."""
    if _start(text) not in ('{', '[', '"'):
        return None
    try:
        obj = json_scan.loads(text)  # C speed; a text that is not JSON fails in one pass
    except (ValueError, RecursionError):
        return None
    values: list[str] = []
    keys: list[str] = []
    stack = [obj]
    walked = 0
    while stack:
        walked += 1
        if walked > MAX_JSON_NODES:
            search.cut = True  # the rest of the document is judged in the value's other forms only
            break
        node = stack.pop()
        if type(node) is str:
            values.append(node)
        elif type(node) is list:
            if json_scan.is_object(node):  # (key, value) pairs, repeated keys included
                keys.extend(map(json_scan.KEY, node))
                stack.extend(map(json_scan.VALUE, reversed(node)))
            else:
                stack.extend(reversed(node))
    return values + keys


def _xml_texts(text: str) -> list[str]:
    """The text nodes, CDATA and attribute values of an XML (SOAP, HTML) text, from its first
    MAX_XML_TOKENS tokens: past them no reading is lost, only its cut into pieces (the text
    is judged whole, its entities undone, as the value's escaped reading)."""
    if not xml_scan.looks_like_xml(text):
        return []
    return xml_scan.texts(text, MAX_XML_TOKENS)[0]
