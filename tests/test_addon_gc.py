"""addon/gc_tuning.py: the start-up heap frozen, later garbage still collected."""

from __future__ import annotations

import gc
import weakref

from addon.gc_tuning import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_startup_heap_is_frozen_and_later_cycles_are_still_collected() -> None:
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 10_000  # the interpreter, pytest and the connector's imports
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made after the freeze: only the collector can free it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
