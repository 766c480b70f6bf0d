"""The start-up heap taken out of the cyclic garbage collector's work (docs/decisions.md, "GC").

A flow allocates many short-lived container objects, so the collector runs often, and each
full collection walks every object mitmdump holds: with the connector loaded that includes
pydantic, aiohttp, prometheus_client and the connector's own modules, none of which ever
becomes garbage. Freezing what exists once mitmdump runs moves it to a permanent generation no
collection walks; what flows allocate is collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("wallarm")


def freeze_startup_heap() -> None:
    gc.collect()  # what start-up left unreachable is freed, not frozen
    gc.freeze()
    log.debug("gc: %d start-up objects frozen", gc.get_freeze_count())
