"""A second custom backend for tests, loaded by a worker with RUN_BACKEND=tests.support.plugin_backends:Counter:
it declares completions only, so that the jobs it lacks show velesio's 501 in each dialect."""

from __future__ import annotations

from collections.abc import Iterator

from velesio_core.backend_plugins import Capability, GenerationRequest, JobContext, ModelInfo


class Counter:
    """Counts up from the last number of the prompt: "7" goes on " 8 9 10 ..."."""

    capabilities = frozenset({Capability.COMPLETION})

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="counter", n_ctx=1024, slots=2)]

    def generate(self, request: GenerationRequest, context: JobContext) -> Iterator[str]:
        words = request.prompt.split()
        number = int(words[-1]) if words and words[-1].isdigit() else 0
        while True:
            number += 1
            yield f" {number}"

    def close(self) -> None:
        pass
