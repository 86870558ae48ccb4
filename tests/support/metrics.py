"""Read a Prometheus endpoint the way Prometheus would, with prometheus-client's own text parser."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    samples: list[tuple[str, dict[str, str], float]]
    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            sample == name and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
            for sample, sample_labels, _ in self.samples
        )


def scrape(url: str, headers: dict[str, str] | None = None) -> Scrape:
    response = requests.get(url, headers=headers, timeout=30)
    response.raise_for_status()
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    return Scrape(samples, response.text)
