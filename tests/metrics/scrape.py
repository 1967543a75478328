"""Reading a node's /metrics as Prometheus would: fetched over HTTP, parsed by
prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def value(text: str, sample: str, **labels: str) -> float:
    """The sample named `sample` with exactly `labels` (0 when absent: a counter
    nothing incremented yet has no sample)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0
