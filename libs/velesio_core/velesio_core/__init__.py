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

# Before the imports: modules imported below read it (metrics, image infotexts).
__version__ = "0.1.0"

from .backend_plugins import Capability, GenerationRequest, JobContext, TextBackend
from .client import AsyncClient, Client

__all__ = [
    "AsyncClient",
    "Capability",
    "Client",
    "GenerationRequest",
    "JobContext",
    "TextBackend",
    "__version__",
]
