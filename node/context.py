"""What every part of a running node shares: settings, store, policy, engine, metrics.

Built once by `node/cli.py` and handed to the connector endpoint and the console, so that
neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.detect.engine import Engine
from node.events import EventStream
from node.metrics import NodeMetrics
from node.policy import Policy
from node.settings import NodeSettings
from node.store.base import Store


@dataclass(slots=True)
class NodeContext:
    settings: NodeSettings
    store: Store
    policy: Policy  # mode settings and IP lists, cached for the hot path
    engine: Engine
    metrics: NodeMetrics
    console_token: str = ""
    events: EventStream | None = None  # SIEM sinks; None when the node runs without them
