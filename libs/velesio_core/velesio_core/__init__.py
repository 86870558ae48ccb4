"""velesio's core library: a queue client for Python apps, the backend plugin interface, and the
job, event and result vocabulary that velesio's API and workers share.

```python
from velesio_core import Client

with Client("redis://localhost:6379/0") as client:
    print(client.complete("Once upon a time", max_tokens=32).text)
```

The names listed in ``__all__`` here and in the public modules (``velesio_core.client``,
``velesio_core.backend_plugins``, ``velesio_core.results``, ``velesio_core.errors``) are the
public API, versioned semantically (see the docs' "Versions and deprecations"); everything else
is velesio's own and may change in any release.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .backend_plugins import Capability, GenerationRequest, JobContext, TextBackend
    from .client import AsyncClient, Client

#: Public name -> the module that defines it. Imported on first use (PEP 562), not here: every
#: ``import velesio_core.<module>`` runs this file first, and the client pulls in
#: prometheus-client, which the API must import only after it has set up its multiprocess
#: directory (velesio_core.metrics.multiprocess), else its processes' metrics vanish.
_LAZY = {
    "AsyncClient": ".client",
    "Client": ".client",
    "Capability": ".backend_plugins",
    "GenerationRequest": ".backend_plugins",
    "JobContext": ".backend_plugins",
    "TextBackend": ".backend_plugins",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "Capability",
    "Client",
    "GenerationRequest",
    "JobContext",
    "TextBackend",
    "__version__",
]
