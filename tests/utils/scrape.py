"""Read one metric off a service's ``/metrics`` (with the cluster credential)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.utils.auth import http


def metric(url: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets) that ``url``/metrics shows now."""
    text = http.get(url + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)
