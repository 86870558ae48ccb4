"""AUTOMATIC1111's web UI API (``/sdapi/v1``), as Unity Stable Diffusion integrations and
A1111 client libraries use it (docs/clients.md, Stable Diffusion for Unity and webuiapi)."""
