"""Logging for velesio's processes: one line per record, level from LOG_LEVEL (default INFO)."""

from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: noise, and a cost on every job.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
