"""Reading a Prometheus text page in tests, parsed by prometheus_client.

Keys are `name{labels}` with the labels sorted by name (prometheus_client writes them sorted),
so `value(page, 'x_total{status="400",delivery="sync"}')` finds the sample whatever order the
test names its labels in.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _key(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def samples(text: str) -> dict[str, float]:
    return {_key(s.name, s.labels): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, sample: str, default: float = 0.0) -> float:
    """The value of one sample, `name` or `name{label="v",...}`; `default` when absent."""
    name, _, labels = sample.partition("{")
    return samples(text).get(_key(name, dict(_LABEL.findall(labels))), default)
