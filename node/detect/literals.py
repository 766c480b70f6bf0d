"""Is any of a set of words in a text? One hyperscan pass instead of a substring test per word.

The analysers ask this before an expensive regex (`any(word in low for word in WORDS)`): with
20-30 words each `in` walks the whole window again, ~17 us on a 2 KB window, where hyperscan's
literal matcher reads it once (~0.5 us). The words are ASCII and the text is searched as UTF-8,
where an ASCII byte is only ever an ASCII character, so the answer is the substring tests' own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import hyperscan


def record_hit(idx: int, _start: int, _end: int, _flags: int, found: Any) -> None:
    """A hyperscan match handler: adds the pattern's index to the set handed to the scan as
    its context. Not a stop (that raises ScanTerminated, which costs more than reading on):
    each pattern is reported once at most (HS_FLAG_SINGLEMATCH)."""
    found.add(idx)


# below this many characters the substring tests cost no more than the scan's call (~0.7 us)
SHORT_TEXT = 32


class Literals:
    """A set of ASCII words, searched for together."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(dict.fromkeys(words))
        if not all(word.isascii() and word for word in self.words):
            raise ValueError("Literals takes non-empty ASCII words")
        # one word: `in` is a memchr-speed search, three times cheaper than a scan's call
        self._single = self.words[0] if len(self.words) == 1 else None
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=[word.encode() for word in self.words], ids=list(range(len(self.words))),
                         elements=len(self.words), flags=hyperscan.HS_FLAG_SINGLEMATCH, literal=True)
        # a scratch per thread: the node judges large messages in a thread of their own
        self._local = threading.local()

    def _scratch(self) -> hyperscan.Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def any_in(self, text: str) -> bool:
        """`any(word in text for word in words)`."""
        if self._single is not None:
            return self._single in text
        if len(text) < SHORT_TEXT:
            return any(word in text for word in self.words)
        found: set[int] = set()
        # positional arguments: keywords cost 0.3 us a call (signatures.SignatureSet.scan)
        self._db.scan(text.encode("utf-8", "surrogatepass"), record_hit, 0, found, self._scratch())
        return bool(found)
