"""The library's contract without servers: what each velesio error becomes for a Python caller,
and how RUN_BACKEND is read and refused."""

from __future__ import annotations

import time

import pytest

from velesio_core.backend_plugins import Capability, load_backend
from velesio_core.client import (
    BackendError,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    ScopeDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from velesio_core.client.errors import from_gateway_error
from velesio_core.errors import ErrorKind, GatewayError, QueueFullError
from velesio_core.jobs import Job, JobKind
from velesio_core.settings import Settings, SettingsError

# The 429 kinds come with API keys (velesio_core.tenants, issue 13), which may not have landed.
NEEDS_KEYS = pytest.mark.skipif(not hasattr(ErrorKind, "RATE_LIMITED"), reason="ErrorKind has no 429 kinds yet")


@pytest.mark.parametrize(
    ("code", "type_name", "expected"),
    [
        (401, "authentication_error", Unauthenticated),
        (403, "permission_error", ScopeDenied),
        pytest.param(429, "rate_limit_error", RateLimited, marks=NEEDS_KEYS),
        pytest.param(429, "insufficient_quota", QuotaExceeded, marks=NEEDS_KEYS),
        (400, "invalid_request_error", InvalidRequest),
        (400, "exceed_context_size_error", InvalidRequest),
        (404, "not_found_error", ModelNotFound),
        (501, "not_supported_error", NotSupported),
        (503, "unavailable_error", Unavailable),
        (504, "unavailable_error", Timeout),
        (500, "server_error", BackendError),
    ],
)
def test_each_error_a_job_can_end_with_is_its_own_exception(code, type_name, expected):
    error = from_gateway_error(GatewayError.from_event_data({"code": code, "message": "why", "type": type_name}))
    assert type(error) is expected
    assert error.status == code
    assert error.message == "why"


@NEEDS_KEYS
def test_a_rate_limit_says_how_long_to_wait():
    refused = GatewayError(ErrorKind.from_llama_type("rate_limit_error", 429), "slow down", retry_after_s=7)
    error = from_gateway_error(refused)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7


def test_a_full_queue_is_told_from_an_outage():
    assert isinstance(from_gateway_error(QueueFullError(3, retry_after_s=1)), QueueFull)
    outage = GatewayError(ErrorKind.UNAVAILABLE, "the job queue (Redis) is unreachable", retry_after_s=1)
    assert isinstance(from_gateway_error(outage), Unavailable)


def test_a_job_no_worker_started_before_its_deadline_is_a_timeout():
    job = Job.create(JobKind.COMPLETION, {"prompt": "x"}, model="m", deadline_s=0.0, timeout_s=1)
    time.sleep(0.01)
    error = GatewayError(ErrorKind.UNAVAILABLE, "no worker started the job within 0 s", retry_after_s=1)
    assert isinstance(from_gateway_error(error, job), Timeout)


def test_run_backend_replaces_the_llm_backend():
    settings = Settings.from_env({"RUN_BACKEND": "markov", "RUN_LLAMACPP": "false"})
    assert settings.run_backend == "markov"
    assert settings.llm_backend == "custom"
    assert Settings.from_env({"RUN_BACKEND": "markov"}).llm_backend == "custom"


@pytest.mark.parametrize("other", ["RUN_OLLAMA", "RUN_LLAMACPP"])
def test_run_backend_beside_another_llm_backend_is_refused(other):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"RUN_BACKEND": "markov", other: "true"})
    assert refused.value.variable == other


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no-such-backend", "no backend named 'no-such-backend'"),
        ("no_such_module:Thing", "cannot import no_such_module"),
        ("velesio_core.settings:Nothing", "has no Nothing"),
        # A class that is no backend at all: it declares nothing.
        ("velesio_core.settings:SettingsError", "failed to start"),
        ("tests.library.test_contract:Undeclared", "declares no capabilities"),
        ("tests.library.test_contract:ClaimsEmbeddings", "declares embeddings but has no Embeds methods"),
    ],
)
def test_a_backend_that_cannot_be_loaded_names_run_backend(spec, says):
    with pytest.raises(SettingsError) as refused:
        load_backend(spec)
    assert refused.value.variable == "RUN_BACKEND"
    assert says in str(refused.value)


class Undeclared:
    capabilities: frozenset[Capability] = frozenset()


class ClaimsEmbeddings:
    capabilities = frozenset({Capability.EMBEDDINGS})

    def models(self) -> list[object]:
        return []
