"""The node's Prometheus metrics, kept and rendered by prometheus_client.

Each NodeMetrics has its own CollectorRegistry (tests run several nodes in one process).
`_Labelled` keeps the call sites short (`metrics.verdicts.inc(action, reason)`); the counts,
the exposition format and its escaping are prometheus_client's. Values counted elsewhere (the
store's dropped writes and write errors, queue depths) are read at scrape time by a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# `_created` series double every counter's lines and no dashboard here reads them
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
# Analysis latency buckets, seconds: the engine's budget is a few milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Labelled:
    """A counter whose `inc` takes its label values positionally, in declaration order."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...], registry: CollectorRegistry) -> None:
        self._counter = Counter(name, help_text, labels, registry=registry)
        self._plain = not labels
        # children by label values: `labels()` validates and locks on every call (~5 us against
        # ~1 us for a cached child's inc; several per message on the endpoint's hot path)
        self._children: dict[tuple[str, ...], Counter] = {}

    def inc(self, *label_values: str, amount: float = 1) -> None:
        if self._plain:
            self._counter.inc(amount)
            return
        child = self._children.get(label_values)
        if child is None:
            child = self._children[label_values] = self._counter.labels(*label_values)
        child.inc(amount)

    def get(self, *label_values: str) -> float:
        """The current count (0 for label values never counted): for tests and the console."""
        name = self._counter._name + "_total"  # noqa: SLF001 - the sample name prometheus_client renders
        for metric in self._counter.collect():
            for sample in metric.samples:
                if sample.name == name and tuple(sample.labels.values()) == label_values:
                    return sample.value
        return 0.0


class _ReadAtScrape:
    """Gauges and counters whose values live elsewhere, read each time /metrics is scraped."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, read) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=float(read()))
        for name, (help_text, read) in self.counters.items():
            yield CounterMetricFamily(name, help_text, value=float(read()))


class NodeMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, help_text: str, labels: Iterable[str] = ()) -> _Labelled:
            return _Labelled(name, help_text, tuple(labels), self.registry)

        self.messages = counter("wallarm_node_messages_total", "Protocol messages received, by type and delivery (sync in-line, async mirrored).", ("type", "delivery"))
        self.verdicts = counter("wallarm_node_verdicts_total", "Verdicts answered, by action and reason.", ("action", "reason"))
        self.attacks = counter("wallarm_node_attacks_total", "Findings in requests and responses, by attack type.", ("type",))
        self.partial = counter("wallarm_node_partial_inspections_total",
                               "Requests inspected only in part (a limit ended inspection early), by reason.", ("reason",))
        self.excepted = counter("wallarm_node_requests_excepted_total",
                                "Requests an exception (\"not an attack here\") let through: every finding excepted.")
        self.recorded = counter("wallarm_node_recorded_total", "Attack records queued to the store, by stored action.", ("action",))
        self.parse_errors = counter("wallarm_node_parse_errors_total", "Messages refused as malformed (4xx), by kind.", ("kind",))
        self.analysis_errors = counter("wallarm_node_analysis_errors_total", "Messages whose analysis raised an error.")
        self.pairing_evictions = counter("wallarm_node_pairing_evictions_total", "Unpaired messages dropped, by reason and side.", ("reason", "side"))
        self.pairing_joined = counter("wallarm_node_pairing_joined_total", "Requests joined with their response.")
        self.config_reloads = counter("wallarm_node_config_reloads_total", "Config reloads applied (SIGHUP).")
        self.config_errors = counter("wallarm_node_config_errors_total", "Config reloads refused: the file could not be read or validated; the last good config stayed.")
        self.console_auth = counter("wallarm_node_console_auth_total", "Console token checks (via login form or bearer), by result: ok, wrong, refused (429, client locked out).", ("via", "result"))
        self.console_lockouts = counter("wallarm_node_console_lockouts_total", "Console clients locked out after too many wrong tokens.")
        self.events = counter("wallarm_node_events_total", "Attack events for SIEMs, by sink and result: sent, failed (after retries), dropped (queue full).", ("sink", "result"))
        self.analysis = Histogram("wallarm_node_analysis_seconds", "Detection engine time per message.",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._read_at_scrape = _ReadAtScrape()
        self.registry.register(self._read_at_scrape)
        self.add_gauge("wallarm_node_start_time_seconds", "Unix time the node started.", lambda: self.started)

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge; one registered again under the same name replaces the first."""
        self._read_at_scrape.gauges[name] = (help_text, read)

    def add_counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept by another part (the store's drops and write errors), read at scrape time.
        `name` is given without `_total`: prometheus_client appends it."""
        self._read_at_scrape.counters[name] = (help_text, read)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
