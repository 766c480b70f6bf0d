"""Reading a Prometheus text page in tests the way a scraper does (prometheus_client's parser).

Samples are looked up as written in the exposition, `name{label="value",...}`, with the labels
in any order (prometheus_client writes them sorted): `samples(page)['x_total{b="2",a="1"}']`,
`value(page, 'x_total{a="1"}')` (0 when absent). Text a scraper would refuse raises ValueError.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def _parse(text: str) -> dict[SampleKey, float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _key(written: str) -> SampleKey:
    (key,) = _parse(written + " 0\n")  # the query read by the same parser as the page
    return key


class Samples(dict[SampleKey, float]):
    def __getitem__(self, written: str) -> float:  # type: ignore[override]
        return super().__getitem__(_key(written))

    def __contains__(self, written: object) -> bool:
        return isinstance(written, str) and super().__contains__(_key(written))

    def value(self, written: str, default: float = 0.0) -> float:
        return super().get(_key(written), default)


def samples(text: str) -> Samples:
    return Samples(_parse(text))


def value(text: str, sample: str, default: float = 0.0) -> float:
    """The value of one sample, `name` or `name{label="v",...}`; `default` when absent."""
    return samples(text).value(sample, default)
