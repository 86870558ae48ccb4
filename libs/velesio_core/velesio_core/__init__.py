"""velesio's core library: settings, auth, job schemas, the queue and event protocol, backends.

Other Python apps can use it directly, e.g. to validate llama.cpp requests the way velesio does::

    from velesio_core.dialects.llamacpp.schemas import CompletionRequest
    from velesio_core.validation import parse

    request = parse(CompletionRequest, {"prompt": "Hello", "n_predict": 16})
"""

__version__ = "0.1.0"
