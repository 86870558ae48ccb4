"""The API dialects velesio speaks, one package each, all of one shape.

``<name>/schemas.py``
    The requests as pydantic models: strict on types and bounds, so that bad input is a 400 that
    names the field. Models only.
``<name>/decode.py``
    Pure functions: a validated request to a job payload (llama.cpp's vocabulary, see events.py),
    refusing with a 4xx what velesio cannot do.
``<name>/encode.py``
    Pure functions, and small stateful stream encoders (``encode(event) -> chunks``): results and
    events to the dialect's JSON, and its error body. The clock is passed in (clock.py).

The HTTP side lives in ``services/api/velesio_api/routes/<name>.py`` (see routing.py there).
"""
