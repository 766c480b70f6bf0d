"""What every part of a running node shares: settings, store, policy, engine, metrics.

Built once by `node/cli.py` and handed to the connector endpoint and the console, so that
neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.store.base import Store


@dataclass(slots=True)
class NodeContext:
    settings: Any  # node.settings.NodeSettings
    store: "Store"
    policy: Any  # node.policy.Policy: mode settings and IP lists, cached for the hot path
    engine: Any  # node.detect.engine.Engine
    metrics: Any  # node.metrics.NodeMetrics
    console_token: str = ""
