"""`--set wallarm_log_format=json`: mitmdump's log lines as one JSON object each.

The same keys as the node's `--log-format json` (wallarm_wire/jsonlog.py), so one log pipeline
reads both. It swaps the formatter of mitmproxy's terminal log handler and puts it back for
`text`. Flow lines printed by mitmproxy's dumper are not log records: run with
`--set flow_detail=0` (the images do) for output that is JSON throughout. mitmproxy's own
"Loading script" line comes before any script runs, so it stays text.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions
from mitmproxy.addons.termlog import TermLogHandler

from wallarm_wire.jsonlog import JSONFormatter

FORMATS = ("text", "json")


class LogFormat:
    def __init__(self) -> None:
        self._saved: dict[logging.Handler, logging.Formatter | None] = {}

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("wallarm_log_format", str, "text",
                          "Log lines as text (mitmproxy's) or json (one object per line: ts, level, logger, msg).",
                          choices=FORMATS)

    def configure(self, updated: set[str]) -> None:
        if "wallarm_log_format" not in updated:
            return
        fmt = ctx.options.wallarm_log_format
        if fmt not in FORMATS:  # choices are checked by mitmproxy too; say it in our words
            raise exceptions.OptionsError(f"wallarm_log_format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if fmt == "json":
            for handler in logging.getLogger().handlers:
                if isinstance(handler, TermLogHandler) and handler not in self._saved:
                    self._saved[handler] = handler.formatter
                    handler.setFormatter(JSONFormatter())
        else:
            self._restore()

    # no `done` hook: addons after this one still log while mitmdump shuts down
    def _restore(self) -> None:
        for handler, formatter in self._saved.items():
            handler.setFormatter(formatter)
        self._saved.clear()
