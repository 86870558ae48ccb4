"""The API must import prometheus-client only after it has chosen its multiprocess directory
(velesio_core.metrics.multiprocess): prometheus-client reads PROMETHEUS_MULTIPROC_DIR once, at
import, and a process that imported it earlier keeps its metrics to itself, so /metrics shows none
of the API's own."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import velesio_api.main
import velesio_core.settings
import velesio_core.metrics.multiprocess
print("prometheus_client" in sys.modules)
"""


def test_starting_the_api_does_not_import_prometheus_client_before_its_metrics_are_set_up():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_public_names_still_import():
    import velesio_core

    assert velesio_core.Client.__name__ == "Client" and velesio_core.TextBackend.__name__ == "TextBackend"
    assert set(velesio_core.__all__) <= set(dir(velesio_core)) | {
        name for name in velesio_core.__all__ if hasattr(velesio_core, name)
    }
