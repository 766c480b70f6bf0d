"""The node's Prometheus metrics (types and rendering in wallarm_wire.prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable

from wallarm_wire.prometheus import CONTENT_TYPE, Counter, Gauge, Histogram

# Analysis latency buckets, seconds: the engine's budget is a few milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class NodeMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.messages = Counter("wallarm_node_messages_total", "Protocol messages received, by type and delivery (sync in-line, async mirrored).", ("type", "delivery"))
        self.verdicts = Counter("wallarm_node_verdicts_total", "Verdicts answered, by action and reason.", ("action", "reason"))
        self.attacks = Counter("wallarm_node_attacks_total", "Findings in requests and responses, by attack type.", ("type",))
        self.partial = Counter("wallarm_node_partial_inspections_total",
                               "Requests inspected only in part (a limit ended inspection early), by reason.", ("reason",))
        self.excepted = Counter("wallarm_node_requests_excepted_total",
                                "Requests an exception (\"not an attack here\") let through: every finding excepted.")
        self.recorded = Counter("wallarm_node_recorded_total", "Attack records queued to the store, by stored action.", ("action",))
        self.parse_errors = Counter("wallarm_node_parse_errors_total", "Messages refused as malformed (4xx), by kind.", ("kind",))
        self.analysis_errors = Counter("wallarm_node_analysis_errors_total", "Messages whose analysis raised an error.")
        self.pairing_evictions = Counter("wallarm_node_pairing_evictions_total", "Unpaired messages dropped, by reason and side.", ("reason", "side"))
        self.pairing_joined = Counter("wallarm_node_pairing_joined_total", "Requests joined with their response.")
        self.config_reloads = Counter("wallarm_node_config_reloads_total", "Config reloads applied (SIGHUP).")
        self.config_errors = Counter("wallarm_node_config_errors_total", "Config reloads refused: the file could not be read or validated; the last good config stayed.")
        self.console_auth = Counter("wallarm_node_console_auth_total", "Console token checks (via login form or bearer), by result: ok, wrong, refused (429, client locked out).", ("via", "result"))
        self.console_lockouts = Counter("wallarm_node_console_lockouts_total", "Console clients locked out after too many wrong tokens.")
        self.analysis = Histogram("wallarm_node_analysis_seconds", "Detection engine time per message.", LATENCY_BUCKETS)
        self._gauges: list[Gauge] = [Gauge("wallarm_node_start_time_seconds", "Unix time the node started.", lambda: self.started)]

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge; one registered again under the same name replaces the first."""
        self._gauges = [g for g in self._gauges if g.name != name] + [Gauge(name, help_text, read)]

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.messages, self.verdicts, self.attacks, self.partial, self.excepted, self.recorded, self.parse_errors,
                       self.analysis_errors, self.pairing_evictions, self.pairing_joined, self.console_auth,
                       self.console_lockouts, self.config_reloads, self.config_errors, self.analysis, *self._gauges):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
