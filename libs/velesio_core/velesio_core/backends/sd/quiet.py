"""diffusers and transformers without the output that means nothing to a velesio user.

- Their progress bars: velesio loads and writes pipelines from and to local files only (nothing
  is ever fetched from a hub), which takes seconds at most; a bar there is noise in a service's
  log. velesio's own downloads have a progress line of their own (download.py).
- transformers' "``CLIPImageProcessor`` requires torchvision (not installed)": diffusers imports
  the CLIP and SigLIP image processors for safety checkers and IP-Adapters, which velesio never
  loads, so the PIL processors transformers falls back to are as good, and torchvision is not
  worth its install.
"""

from __future__ import annotations

import functools
import logging

_TORCHVISION_FALLBACK = "requires torchvision (not installed)"


class _HideTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHVISION_FALLBACK not in record.getMessage()


@functools.cache
def quiet_hugging_face() -> None:
    """Call before diffusers is imported; once is enough."""
    logging.getLogger("transformers.utils.import_utils").addFilter(_HideTorchvisionFallback())
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
