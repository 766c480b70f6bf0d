"""Connector counters and the node-latency histogram, rendered as Prometheus text.

Plain ints and lists: the proxy runs on one event loop, so no locks are needed and an
increment costs next to nothing on the hot path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from wallarm_wire.prometheus import Histogram, header, number

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_NAME = "wallarm_connector_node_latency_seconds"
LATENCY_HELP = ("Node call latency (sync = in-line verdicts, async = mirrored messages, one observation per "
                "pipelined batch).")


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
        self.node_latency: dict[str, Histogram] = {
            d: Histogram(LATENCY_NAME, LATENCY_HELP, LATENCY_BUCKETS_S, {"delivery": d}) for d in ("sync", "async")}

    def render(self, mirror_depth: int, mirror_capacity: int, breakers: dict[str, str],
               config_active: bool, version: str, mirror_bytes: int = 0,
               in_flight: dict[str, int] | None = None) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            out.extend(header(name, help_, kind))
            out.extend(f"{name}{labels} {number(value)}" for labels, value in samples)

        def by(label: str, counter: Counter[str]) -> list[tuple[str, float]]:
            return [(f'{{{label}="{k}"}}', v) for k, v in sorted(counter.items())]

        metric("wallarm_connector_info", "gauge", "Connector version.", [(f'{{version="{version}"}}', 1)])
        metric("wallarm_connector_config_active", "gauge", "1 when a valid plugin config is active.",
               [("", int(config_active))])
        metric("wallarm_connector_requests_inspected_total", "counter",
               "Requests sent to the node (in-line) or queued for it (out-of-band).", [("", self.inspected)])
        metric("wallarm_connector_requests_passed_total", "counter",
               "In-line requests the node let through.", [("", self.passed)])
        metric("wallarm_connector_requests_blocked_total", "counter",
               "In-line requests the node blocked.", [("", self.blocked)])
        metric("wallarm_connector_requests_excluded_total", "counter",
               "Requests a plugin's exclude filter kept from the node.", [("", self.excluded)])
        metric("wallarm_connector_requests_unrouted_total", "counter",
               "Requests that matched no route (answered 404).", [("", self.unrouted)])
        metric("wallarm_connector_streams_killed_total", "counter",
               "Streamed requests killed because the node blocked them.", [("", self.killed_streams)])
        metric("wallarm_connector_fail_open_total", "counter",
               "In-line requests forwarded without a verdict (the node could not be reached or gave no usable answer), by cause.", by("cause", self.fail_open))
        metric("wallarm_connector_fail_closed_total", "counter",
               "In-line requests refused (503) without a verdict (fail_open=false), by cause.",
               by("cause", self.fail_closed))
        metric("wallarm_connector_node_refusals_total", "counter",
               "Messages the node answered with a 4xx other than 403 (it cannot read them), by status and "
               "delivery: in-line requests are answered by the connector, never forwarded.",
               [(f'{{status="{st}",delivery="{d}"}}', v) for (st, d), v in sorted(self.node_refusals.items())])
        metric("wallarm_connector_mirror_sent_total", "counter",
               "Out-of-band messages delivered to the node.", [("", self.mirror_sent)])
        metric("wallarm_connector_mirror_failed_total", "counter",
               "Out-of-band messages the node did not take, by cause.", by("cause", self.mirror_failed))
        metric("wallarm_connector_mirror_dropped_total", "counter",
               "Out-of-band messages dropped because the queue was full (its count or its bytes).", [("", self.mirror_dropped)])
        metric("wallarm_connector_mirror_queue_depth", "gauge", "Messages waiting in the mirror queue.",
               [("", mirror_depth)])
        metric("wallarm_connector_mirror_queue_capacity", "gauge", "Size of the mirror queue.",
               [("", mirror_capacity)])
        metric("wallarm_connector_mirror_queue_bytes", "gauge", "Bytes held by the messages in the mirror queue.",
               [("", mirror_bytes)])
        metric("wallarm_connector_node_in_flight", "gauge",
               "Calls to the node in flight (each holds a connection), bounded by max_in_flight_per_node.",
               [(f'{{node="{url}"}}', n) for url, n in sorted((in_flight or {}).items())])
        metric("wallarm_connector_config_reloads_total", "counter", "Config file versions applied.",
               [("", self.config_reloads)])
        metric("wallarm_connector_config_errors_total", "counter", "Config file versions rejected.",
               [("", self.config_errors)])
        metric("wallarm_connector_node_breaker_open", "gauge", "1 when the node's circuit breaker is open.",
               [(f'{{node="{url}"}}', int(state in ("open", "half_open")))
                for url, state in sorted(breakers.items())])

        out += header(LATENCY_NAME, LATENCY_HELP, "histogram")
        for h in self.node_latency.values():
            out += h.samples()
        return "\n".join(out) + "\n"


MetricsSource = Callable[[], str]
