"""Connector counters and the node-latency histogram, exposed through prometheus_client.

The hot path increments plain ints and Counters: the proxy runs on one event loop, so no locks
are needed and an increment costs ~0.1 µs. When `/metrics` is read, `render` turns them into
prometheus_client metric families and the library writes the text. The latency histogram is
prometheus_client's own (one `observe` per node call, about 1 µs; numbers in docs/connector.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_NAME = "wallarm_connector_node_latency_seconds"
LATENCY_HELP = ("Node call latency (sync = in-line verdicts, async = mirrored messages, one observation per "
                "pipelined batch).")


class _Families:
    """What `generate_latest` reads: a fixed list of metric families."""

    def __init__(self, families: Iterable[Metric]):
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _counter(name: str, help_: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_, value=value)


def _gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_, value=value)


def _labelled(family: CounterMetricFamily | GaugeMetricFamily,
              samples: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    for labels, value in sorted(samples):
        family.add_metric(list(labels), value)
    return family


class Metrics:
    def __init__(self) -> None:
        self.inspected = 0  # requests judged by the node in-line or queued for it out-of-band
        self.passed = 0
        self.blocked = 0
        self.killed_streams = 0
        self.excluded = 0  # matched a plugin's `exclude` filter: never sent to the node
        self.unrouted = 0  # matched no route: answered 404
        self.fail_open: Counter[str] = Counter()
        self.fail_closed: Counter[str] = Counter()
        self.node_refusals: Counter[tuple[str, str]] = Counter()  # (status, delivery)
        self.mirror_sent = 0
        self.mirror_failed: Counter[str] = Counter()
        self.mirror_dropped = 0
        self.config_reloads = 0
        self.config_errors = 0
        # not registered anywhere: `render` hands it to the exposition with the other families
        self._latency = Histogram(LATENCY_NAME, LATENCY_HELP, ["delivery"], buckets=LATENCY_BUCKETS_S, registry=None)
        self.node_latency = {d: self._latency.labels(d) for d in ("sync", "async")}

    def _latency_families(self) -> Iterator[Metric]:
        for family in self._latency.collect():
            # `_created` is a per-process timestamp nothing here reads; the page keeps its old samples
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            if family.samples:
                yield family

    def render(self, mirror_depth: int, mirror_capacity: int, breakers: dict[str, str],
               config_active: bool, version: str, mirror_bytes: int = 0,
               in_flight: dict[str, int] | None = None) -> str:
        def by(name: str, help_: str, label: str, counter: Counter[str]) -> Metric:
            return _labelled(CounterMetricFamily(name, help_, labels=[label]), [((k,), v) for k, v in counter.items()])

        families: list[Metric] = [
            _labelled(GaugeMetricFamily("wallarm_connector_info", "Connector version.", labels=["version"]),
                      [((version,), 1)]),
            _gauge("wallarm_connector_config_active", "1 when a valid plugin config is active.", int(config_active)),
            _counter("wallarm_connector_requests_inspected_total",
                     "Requests sent to the node (in-line) or queued for it (out-of-band).", self.inspected),
            _counter("wallarm_connector_requests_passed_total", "In-line requests the node let through.", self.passed),
            _counter("wallarm_connector_requests_blocked_total", "In-line requests the node blocked.", self.blocked),
            _counter("wallarm_connector_requests_excluded_total",
                     "Requests a plugin's exclude filter kept from the node.", self.excluded),
            _counter("wallarm_connector_requests_unrouted_total", "Requests that matched no route (answered 404).",
                     self.unrouted),
            _counter("wallarm_connector_streams_killed_total",
                     "Streamed requests killed because the node blocked them.", self.killed_streams),
            by("wallarm_connector_fail_open_total", "In-line requests forwarded without a verdict (the node could "
               "not be reached or gave no usable answer), by cause.", "cause", self.fail_open),
            by("wallarm_connector_fail_closed_total",
               "In-line requests refused (503) without a verdict (fail_open=false), by cause.", "cause",
               self.fail_closed),
            _labelled(CounterMetricFamily(
                "wallarm_connector_node_refusals_total",
                "Messages the node answered with a 4xx other than 403 (it cannot read them), by status and "
                "delivery: in-line requests are answered by the connector, never forwarded.",
                labels=["status", "delivery"]), self.node_refusals.items()),
            _counter("wallarm_connector_mirror_sent_total", "Out-of-band messages delivered to the node.",
                     self.mirror_sent),
            by("wallarm_connector_mirror_failed_total", "Out-of-band messages the node did not take, by cause.",
               "cause", self.mirror_failed),
            _counter("wallarm_connector_mirror_dropped_total",
                     "Out-of-band messages dropped because the queue was full (its count or its bytes).",
                     self.mirror_dropped),
            _gauge("wallarm_connector_mirror_queue_depth", "Messages waiting in the mirror queue.", mirror_depth),
            _gauge("wallarm_connector_mirror_queue_capacity", "Size of the mirror queue.", mirror_capacity),
            _gauge("wallarm_connector_mirror_queue_bytes", "Bytes held by the messages in the mirror queue.",
                   mirror_bytes),
            _labelled(GaugeMetricFamily(
                "wallarm_connector_node_in_flight",
                "Calls to the node in flight (each holds a connection), bounded by max_in_flight_per_node.",
                labels=["node"]), (((url,), n) for url, n in (in_flight or {}).items())),
            _counter("wallarm_connector_config_reloads_total", "Config file versions applied.", self.config_reloads),
            _counter("wallarm_connector_config_errors_total", "Config file versions rejected.", self.config_errors),
            _labelled(GaugeMetricFamily("wallarm_connector_node_breaker_open",
                                        "1 when the node's circuit breaker is open.", labels=["node"]),
                      (((url,), int(state in ("open", "half_open"))) for url, state in breakers.items())),
            *self._latency_families(),
        ]
        return generate_latest(_Families(families)).decode()  # type: ignore[arg-type]


MetricsSource = Callable[[], str]
