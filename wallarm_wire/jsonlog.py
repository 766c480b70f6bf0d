"""One JSON object per log line, for log shippers (Loki, Elasticsearch, CloudWatch...).

Both the node (`--log-format json`) and the connector (`wallarm_log_format: json`) use it, so
the two sides' lines have the same keys: `ts` (RFC 3339, UTC, milliseconds), `level`,
`logger`, `msg`, and `exc` when an exception is logged. Values passed in `extra={...}` are
kept as further keys when they are JSON-serialisable.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# attributes every LogRecord has: anything else on a record came from `extra=`
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    value = repr(value)
                line[key] = value
        return json.dumps(line, ensure_ascii=False)
