"""velesio's API: the authenticated HTTP front door, a thin Falcon ASGI app over velesio_core."""
