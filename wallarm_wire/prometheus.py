"""Prometheus text exposition (format 0.0.4): the metric types both sides render.

The connector's status listener and the node's admin listener both answer `GET /metrics` in
this format; one implementation keeps their escaping, numbers and histograms identical.
Plain dicts and ints: each side updates its metrics from one event loop, so increments need
no locks and cost next to nothing on the hot path.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_text(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{escape(str(v))}"' for n, v in zip(names, values)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_text, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *label_values: str, amount: float = 1) -> None:
        self.values[label_values] = self.values.get(label_values, 0) + amount

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0)

    def render(self) -> list[str]:
        out = header(self.name, self.help, "counter")
        out += [f"{self.name}{labels_text(self.label_names, k)} {number(v)}" for k, v in sorted(self.values.items())]
        return out


class Gauge:
    """A value read at scrape time from a callable (queue depth, table size...)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> list[str]:
        return header(self.name, self.help, "gauge") + [f"{self.name} {number(self.read())}"]


class Histogram:
    """Cumulative buckets as Prometheus defines them: `le` is an inclusive upper bound."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...],
                 labels: dict[str, str] | None = None):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.labels = labels or {}
        self.counts = [0] * (len(buckets) + 1)  # last slot: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> list[str]:
        """The series' lines without HELP/TYPE, so several labelled series share one header."""
        fixed = "".join(f'{k}="{escape(v)}",' for k, v in self.labels.items())
        plain = labels_text(self.labels.keys(), self.labels.values())
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts):
            running += n
            out.append(f'{self.name}_bucket{{{fixed}le="{float(bound)!r}"}} {running}')
        out.append(f'{self.name}_bucket{{{fixed}le="+Inf"}} {self.count}')
        out.append(f"{self.name}_sum{plain} {repr(self.sum)}")
        out.append(f"{self.name}_count{plain} {self.count}")
        return out

    def render(self) -> list[str]:
        return header(self.name, self.help, "histogram") + self.samples()
