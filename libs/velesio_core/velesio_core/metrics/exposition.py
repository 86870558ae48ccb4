"""Render a scrape: this process's metrics, or those of every gunicorn process added up (see
multiprocess.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .multiprocess import MULTIPROCESS_ENV

#: The text format every Prometheus 2.x parses.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The scrape's body: the process's (or processes') metrics, then ``extra`` families read at
    scrape time (the queue's state)."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(_Families(extra))
