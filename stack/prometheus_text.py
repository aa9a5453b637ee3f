"""Reading a Prometheus text exposition (a `/metrics` page): the one parser of the repository.

prometheus_client's own parser does the reading (it is in the relay image, where `make smoke` runs, and in the
dev environment); this module only shapes its answer for the questions our tools and tests ask: which samples
are there, what is this sample's value, what do these samples add up to.
"""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def metric_families(exposition: str) -> dict[str, Metric]:
    """Every metric family by name (a counter's family is named without `_total`)."""
    return {family.name: family for family in text_string_to_metric_families(exposition)}


def samples(exposition: str, name: str | None = None, /, **labels: str) -> list[Sample]:
    """Every sample, or those called `name` whose labels include `labels`, in exposition order."""
    return [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if (name is None or sample.name == name) and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def sample_names(exposition: str) -> set[str]:
    """The names of the samples (`foo_total`, `foo_bucket`, ...) the exposition holds."""
    return {sample.name for sample in samples(exposition)}


def sample_values(exposition: str) -> dict[SampleKey, float]:
    """{(sample name, its labels): value} of every sample."""
    return {(sample.name, frozenset(sample.labels.items())): float(sample.value) for sample in samples(exposition)}


def first_value(exposition: str, name: str, /, **labels: str) -> float:
    """The value of the first sample called `name` whose labels include `labels` (0 when there is none)."""
    found = samples(exposition, name, **labels)
    return float(found[0].value) if found else 0.0


def metric_sum(exposition: str, name: str, /, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there is none)."""
    return float(sum(sample.value for sample in samples(exposition, name, **labels)))
