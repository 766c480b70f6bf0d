"""Read Prometheus text the way a scraper does (prometheus_client's parser), for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def _parse(text: str) -> dict[SampleKey, float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Samples(dict[SampleKey, float]):
    """Samples looked up as written in the exposition: `name{label="value",...}`, labels in any order."""

    def __getitem__(self, written: str) -> float:  # type: ignore[override]
        (key,) = _parse(written + " 0\n")  # the query read by the same parser as the text
        return super().__getitem__(key)

    def value(self, written: str, default: float = 0.0) -> float:
        try:
            return self[written]
        except KeyError:
            return default


def samples(text: str) -> Samples:
    """Every sample of `text`; raises ValueError on text a scraper would refuse."""
    return Samples(_parse(text))
