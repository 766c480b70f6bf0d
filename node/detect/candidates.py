"""The loop the token-level detectors share: judge candidates one by one, within the time bound.

Path traversal, SSRF, NoSQL and LDAP find their candidates (path tokens, URLs, `$operators`,
filter openings) with one linear regex pass over the whole value, so unlike the SQL and shell
analysers they need no windows; only their Python loop over the candidates can grow with the
value, and the engine's time bound (`out_of_time`, a CPU-clock check) is asked every
CHECK_EVERY candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

CHECK_EVERY = 256
Candidate = TypeVar("Candidate")


def first_rule(candidates: Iterable[Candidate], judge: Callable[[Candidate], str | None],
               out_of_time: Callable[[], bool] | None) -> str | None:
    """The first rule `judge` finds among `candidates`; None when none, or when `out_of_time()`
    says the caller's time bound is reached (the caller then knows its verdict is partial)."""
    for i, candidate in enumerate(candidates, 1):
        if i % CHECK_EVERY == 0 and out_of_time is not None and out_of_time():
            return None
        rule = judge(candidate)
        if rule:
            return rule
    return None
