"""Reading the exporter's ``/metrics`` text back as samples."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """``{(name, sorted labels): value}`` of every sample, ``_created`` ones left out."""
    found: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def probe_series(text: str, probe: str) -> dict[str, float]:
    """``{name: value}`` of the series whose only label is ``probe="<probe>"``."""
    return {
        name: value
        for (name, labels), value in samples(text).items()
        if labels == (("probe", probe),)
    }
