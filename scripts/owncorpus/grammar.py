"""What every class grammar shares: the Attack record, seeded drawing of distinct compositions,
and the small lexical variations (keyword case, whitespace) several grammars apply."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

VALUE, STRUCT, DOCUMENT = "value", "struct", "document"


@dataclass(frozen=True, slots=True)
class Attack:
    """One attack: `payload` is the text the backend must receive.

    shape VALUE: a string any placement carries. STRUCT: a JSON object (`struct`) such as a
    NoSQL operator query, rendered as bracketed keys in forms and as JSON in JSON bodies, and as
    its JSON text elsewhere. DOCUMENT: an XML document, `prolog` (declaration, DOCTYPE) + root
    element, rendered as the body (or wrapped in a SOAP envelope) in XML placements."""

    cls: str
    payload: str
    params: tuple[str, ...]  # names a real application would give the parameter
    shape: str = VALUE
    struct: dict | None = field(default=None, compare=False)
    prolog: str = ""


def draw_distinct(rng: random.Random, make: Callable[[random.Random], str], n: int,
                  max_tries_per_item: int = 50) -> list[str]:
    """`n` distinct payloads from a composing function, in draw order (deterministic for a
    seeded `rng`); fewer only if the grammar runs out."""
    seen: dict[str, None] = {}
    tries = 0
    while len(seen) < n and tries < n * max_tries_per_item:
        tries += 1
        seen.setdefault(make(rng), None)
    return list(seen)


def case(word: str, rng: random.Random) -> str:
    """A keyword as written: lower, upper, as is, or mixed case (parsers of SQL, HTML tag and
    attribute names, PowerShell, Windows cmd are case-insensitive)."""
    mode = rng.randrange(4)
    if mode == 0:
        return word.lower()
    if mode == 1:
        return word.upper()
    if mode == 2:
        return word
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)


def one(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]
