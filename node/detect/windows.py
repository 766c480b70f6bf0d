"""Whole values for the structural detectors: normalised, then cut into overlapping windows.

The SQL, shell and Log4j analysers tokenise a bounded stretch of text (their cost per call
must stay small). A longer value is judged window by window: windows of the analyser's width
that start every half width, so any payload up to half a width long lies whole inside one
window wherever the padding put it, and the cost stays linear in the value's length. The
caller may pass a gate (the engine's: "does the signature that called this detector match this
window?", a hyperscan scan of a few microseconds), so that of a long value only the windows
that could hold an injection are tokenised.

Before that, the text is normalised: runs of whitespace and control characters (padding,
bytes that are not UTF-8) become one space, or one newline when the run held a line break (a
shell separator), so 1,100 spaces or 13 control characters no longer push a payload out of
reach. A binary value (compressed data, protobuf: more than BINARY_CONTROLS control
characters other than PIECE_SEPARATOR in its first 256) is read as its printable ASCII runs
of 4 or more characters, the way `strings` reads a file: a text payload inside it is such a
run, random bytes mostly not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

from node.detect.decode import TEXT_ASCII

BINARY_CONTROLS = 12
MIN_PRINTABLE_RUN = 4
# between the pieces of one reading (readings.py: the strings of a JSON document, base64
# tokens) joined into one text: not white space, so no signature's `\s*` spans it (`)` ending
# one piece and `(|` starting the next are no LDAP filter), not a line break (which starts a
# shell command or a mail header). A control character, so read as a space like the others,
# but not counted as a sign of binary data: a document of many short strings is text, and
# reading it as printable ASCII runs would drop its short and non-ASCII pieces (`<ſvg ...>`)
PIECE_SEPARATOR = "\x1f"

_CONTROLS = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\ufffd\\udc80-\\udcff"
_CONTROL_RE = re.compile(f"[{_CONTROLS}]")
# Each pattern is one character class or a literal start: sre scans for those at C speed, and a
# run is consumed once (a pattern like `\s*\n\s*` would rescan a long run of spaces from each
# of its positions). Single spaces and line breaks, most of any text, are no match.
_CONTROL_RUN_RE = re.compile(f"[{_CONTROLS}]+")
_BLANK_RUN_RE = re.compile(r"[\t\x20]{2,}")
_BREAK_RUN_RE = re.compile(r"\n(?:\x20?\n)+")
_PRINTABLE_RUN_RE = re.compile(f"[\\x20-\\x7e\\t\\n\\r]{{{MIN_PRINTABLE_RUN},}}")


def _has_control(text: str) -> bool:
    """_CONTROL_RE.search(text): on ASCII text by deleting the other characters (C passes,
    3x faster than the class walk)."""
    if text.isascii():
        return bool(text.encode("ascii").translate(None, TEXT_ASCII))
    return _CONTROL_RE.search(text) is not None


@functools.lru_cache(maxsize=8)  # the detectors of one value ask for the same forms in turn
def normalise(text: str) -> str:
    """`text` as the structural detectors read it (see the module docstring)."""
    if len(_CONTROL_RE.findall(text, 0, 256)) - text.count(PIECE_SEPARATOR, 0, 256) > BINARY_CONTROLS:
        text = " ".join(_PRINTABLE_RUN_RE.findall(text))
    else:
        if PIECE_SEPARATOR in text:
            # joined pieces hold thousands of separators: each made a space by str.replace (C)
            # instead of a substitution each; the blank-run pass below merges what a run of
            # them (or one beside a space) would have made one space
            text = text.replace(PIECE_SEPARATOR, " ")
        if _has_control(text):
            text = _CONTROL_RUN_RE.sub(" ", text)
    if "  " in text or "\t" in text:
        text = _BLANK_RUN_RE.sub(" ", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\n" in text and ("\n\n" in text or "\n \n" in text):  # (a memchr first: most texts have no line break)
        text = _BREAK_RUN_RE.sub("\n", text)
    return text


def windows(text: str, width: int) -> Iterator[tuple[str, int, int]]:
    """(window, its start in `text`, the characters of it that it owns): `text` itself when it
    fits in `width`, else windows of `width` every `width // 2` characters, the last one
    reaching the end. Each window owns its first half (the last one all of itself): a detector
    that walks positions (the shell analyser's separators) judges those it owns, with the rest
    of the window as what follows them, so every position is judged once."""
    if len(text) <= width:
        yield text, 0, len(text)
        return
    step = width // 2
    last = len(text) - step
    for start in range(0, last, step):
        window = text[start : start + width]
        yield window, start, step if start + step < last else len(window)


Gate = Callable[[str], bool]


def judge_windows(text: str, width: int, judge: Callable[[str, int, int], str | None],
                  out_of_time: Callable[[], bool] | None, gate: Gate | None) -> str | None:
    """The first rule `judge(window, start, owned)` finds in the windows of `text`; None when
    none, or when `out_of_time()` says the caller's time bound is reached (the caller then
    knows its verdict is partial). Of a text longer than `width`, only windows `gate` passes
    are judged."""
    if len(text) <= width:
        return judge(text, 0, len(text))
    # a window equal to one already judged (same text, same share of it owned, not the value's
    # start) has the same answer: padding and flood shapes repeat with a short period, so they
    # cost a hash per window instead of a tokenisation
    judged: set[tuple[str, int]] = set()
    for window, start, owned in windows(text, width):
        if out_of_time is not None and out_of_time():
            return None
        if start:
            key = (window, owned)
            if key in judged:
                continue
            judged.add(key)
        if gate is not None and not gate(window):
            continue
        rule = judge(window, start, owned)
        if rule:
            return rule
    return None
