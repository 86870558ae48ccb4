"""Which environment variables velesio's services read: what a deployment may set for them."""

from __future__ import annotations

from tests.support.processes import ROOT
from velesio_core.settings import Settings


def settings_variables() -> set[str]:
    """Every variable Settings reads: recorded while it reads an empty environment."""
    seen: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            seen.add(key)
            return default

        def __contains__(self, key):
            seen.add(key)
            return False

    Settings.from_env(Recording())
    return seen


#: Variables velesio's services read outside Settings, each with the file that reads it.
OTHER_READERS = {
    "LOG_LEVEL": ROOT / "libs/velesio_core/velesio_core/logs.py",
    "PROMETHEUS_MULTIPROC_DIR": ROOT / "libs/velesio_core/velesio_core/metrics/multiprocess.py",
}


def known_variables() -> set[str]:
    for name, reader in OTHER_READERS.items():
        assert name in reader.read_text(), f"{reader} no longer reads {name}"
    return settings_variables() | set(OTHER_READERS)
