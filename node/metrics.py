"""Prometheus metrics of the node, rendered as text exposition format 0.0.4.

Hand-written rather than prometheus_client: a handful of dict increments on the hot path and
one small renderer, no extra dependency.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Analysis latency buckets, seconds: the engine's budget is a few milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values)) + "}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_text, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str, amount: float = 1) -> None:
        self.values[label_values] = self.values.get(label_values, 0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in sorted(self.values.items())]
        return out


class Gauge:
    """A value read at scrape time from a callable (queue depth, table size...)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {_num(self.read())}"]


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)  # last slot: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{self.name}_sum {repr(self.sum)}")
        out.append(f"{self.name}_count {self.count}")
        return out


class NodeMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.messages = Counter("wallarm_node_messages_total", "Protocol messages received, by type and delivery (sync in-line, async mirrored).", ("type", "delivery"))
        self.verdicts = Counter("wallarm_node_verdicts_total", "Verdicts answered, by action and reason.", ("action", "reason"))
        self.attacks = Counter("wallarm_node_attacks_total", "Findings in requests and responses, by attack type.", ("type",))
        self.partial = Counter("wallarm_node_partial_inspections_total",
                               "Requests inspected only in part (a limit ended inspection early), by reason.", ("reason",))
        self.recorded = Counter("wallarm_node_recorded_total", "Attack records queued to the store, by stored action.", ("action",))
        self.parse_errors = Counter("wallarm_node_parse_errors_total", "Messages refused as malformed (4xx), by kind.", ("kind",))
        self.analysis_errors = Counter("wallarm_node_analysis_errors_total", "Messages whose analysis raised an error.")
        self.pairing_evictions = Counter("wallarm_node_pairing_evictions_total", "Unpaired messages dropped, by reason and side.", ("reason", "side"))
        self.pairing_joined = Counter("wallarm_node_pairing_joined_total", "Requests joined with their response.")
        self.analysis = Histogram("wallarm_node_analysis_seconds", "Detection engine time per message.")
        self._gauges: list[Gauge] = [Gauge("wallarm_node_start_time_seconds", "Unix time the node started.", lambda: self.started)]

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.messages, self.verdicts, self.attacks, self.partial, self.recorded, self.parse_errors,
                       self.analysis_errors, self.pairing_evictions, self.pairing_joined, self.analysis, *self._gauges):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
