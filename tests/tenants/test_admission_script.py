"""admit.lua and release.lua against a real Redis, on a clock the test controls (ARGV now).

Each property compares the script with a reference model written here in plain Python: the
sliding window admits a request exactly when fewer than ``rpm`` were admitted in the 60 s before
it, and concurrency admits exactly when fewer than ``parallel`` leases are unexpired and unreleased.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from velesio_core.tenants.admission import _script
from velesio_core.tenants.model import ApiKey, KeyLimits
from velesio_core.tenants.redis_keys import KeyKeys
from velesio_core.tenants.scopes import Scope

WINDOW_MS = 60_000
DAY_MS = 86_400_000
LEASE_TTL_MS = 5_000


class Scripts:
    def __init__(self, client) -> None:
        self.client = client
        self.admit_script = client.register_script(_script("admit"))
        self.release_script = client.register_script(_script("release"))

    def key(self, parent: str | None = None, **limits) -> str:
        key_id = uuid.uuid4().hex[:12]
        record = ApiKey(id=key_id, name="k", scopes=frozenset({Scope.LLM}), limits=KeyLimits(**limits), parent=parent)
        self.client.hset(KeyKeys(key_id).record, mapping=record.to_hash())
        return key_id

    def admit(self, chain: list[str], now: int, lease: str | None = None, images: int = 0) -> list:
        keys = [name for key_id in chain for name in KeyKeys(key_id).admission()]
        lease = lease if lease is not None else uuid.uuid4().hex
        return self.admit_script(keys=keys, args=[now, lease, LEASE_TTL_MS, images, WINDOW_MS])

    def release(self, chain: list[str], now: int, lease: str, tokens: int = 0, refund: int = 0) -> None:
        keys = [name for key_id in chain for name in KeyKeys(key_id).usage()]
        self.release_script(keys=keys, args=[now, lease, tokens, refund, WINDOW_MS])


@pytest.fixture(scope="module")
def scripts(redis_server):
    client = redis_server.client(db=5)
    yield Scripts(client)
    client.flushdb()
    client.close()


def test_rpm_refuses_with_the_real_wait_and_admits_when_the_oldest_leaves(scripts):
    key = scripts.key(rpm=3)
    for now in (1_000, 2_000, 3_000):
        assert scripts.admit([key], now)[0] == 1
    refused = scripts.admit([key], 30_000)
    assert refused[0] == 0 and refused[1] == b"rate" and refused[4] == b"rpm"
    assert refused[2] == 1_000 + WINDOW_MS - 30_000
    assert scripts.admit([key], 1_000 + WINDOW_MS - 1)[0] == 0
    assert scripts.admit([key], 1_000 + WINDOW_MS)[0] == 1


def test_admission_reports_the_remaining_requests_and_their_reset(scripts):
    key = scripts.key(rpm=5)
    scripts.admit([key], 10_000)
    answer = scripts.admit([key], 12_000)
    assert answer[:4] == [1, 5, 3, 10_000 + WINDOW_MS - 12_000]
    assert answer[4] == -1  # no token limit: no token headers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rpm=st.integers(1, 6), gaps=st.lists(st.integers(0, 40_000), min_size=1, max_size=40))
def test_rpm_is_exactly_a_sliding_window(scripts, rpm, gaps):
    key = scripts.key(rpm=rpm)
    admitted: list[int] = []
    now = 1_000_000
    for gap in gaps:
        now += gap
        in_window = [t for t in admitted if t > now - WINDOW_MS]
        answer = scripts.admit([key], now)
        assert (answer[0] == 1) == (len(in_window) < rpm)
        if answer[0] == 1:
            admitted.append(now)
        else:
            assert answer[2] == min(in_window) + WINDOW_MS - now
    # Never more than rpm admissions in any 60 s window.
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + WINDOW_MS) <= rpm


operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 3_000)),
        st.tuples(st.just("release"), st.integers(0, 3_000)),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parallel=st.integers(1, 4), ops=operations)
def test_never_more_than_parallel_live_leases(scripts, parallel, ops):
    key = scripts.key(parallel=parallel)
    live: dict[str, int] = {}  # lease -> expiry
    now = 5_000_000
    for op, gap in ops:
        now += gap
        live = {lease: expiry for lease, expiry in live.items() if expiry > now}
        if op == "acquire":
            lease = uuid.uuid4().hex
            answer = scripts.admit([key], now, lease)
            assert (answer[0] == 1) == (len(live) < parallel)
            if answer[0] == 1:
                live[lease] = now + LEASE_TTL_MS
            else:
                assert answer[4] == b"parallel"
        elif live:
            lease = sorted(live)[0]
            scripts.release([key], now, lease)
            del live[lease]
        held = scripts.client.zcount(KeyKeys(key).leases, f"({now}", "+inf")
        assert held == len(live) <= parallel


def test_a_dead_processes_lease_is_reclaimed_after_its_ttl(scripts):
    key = scripts.key(parallel=1)
    assert scripts.admit([key], 0, "held-by-a-dead-process")[0] == 1
    assert scripts.admit([key], LEASE_TTL_MS - 1)[0] == 0
    assert scripts.admit([key], LEASE_TTL_MS)[0] == 1


def test_tokens_per_minute_are_charged_with_real_usage(scripts):
    key = scripts.key(tpm=100)
    assert scripts.admit([key], 0, "a")[0] == 1
    scripts.release([key], 500, "a", tokens=60)
    answer = scripts.admit([key], 1_000, "b")
    assert answer[0] == 1 and answer[4:] == [100, 40, 1_000 + WINDOW_MS - 1_000]
    scripts.release([key], 2_000, "b", tokens=50)
    refused = scripts.admit([key], 3_000)
    assert refused[0] == 0 and refused[4] == b"tpm"
    # The first 60 tokens (charged in second 0) leave the window at 61 s: then 50 < 100.
    assert refused[2] == 1_000 + WINDOW_MS - 3_000
    assert scripts.admit([key], 1_000 + WINDOW_MS)[0] == 1


def test_daily_tokens_answer_quota_until_midnight(scripts):
    key = scripts.key(tokens_per_day=10)
    morning = 100 * DAY_MS + 3_600_000
    scripts.admit([key], morning, "a")
    scripts.release([key], morning + 1, "a", tokens=12)
    refused = scripts.admit([key], morning + 2)
    assert refused[:2] == [0, b"quota"] and refused[4] == b"tokens_per_day"
    assert refused[2] == 101 * DAY_MS - (morning + 2)
    assert scripts.admit([key], 101 * DAY_MS)[0] == 1


def test_images_are_reserved_and_given_back_when_the_job_fails(scripts):
    key = scripts.key(images_per_day=4)
    now = 200 * DAY_MS
    assert scripts.admit([key], now, "a", images=3)[0] == 1
    refused = scripts.admit([key], now, "b", images=2)
    assert refused[:2] == [0, b"quota"] and refused[4] == b"images_per_day"
    scripts.release([key], now, "a", refund=3)
    assert scripts.admit([key], now, "c", images=4)[0] == 1


def test_a_minted_keys_use_counts_against_its_parent(scripts):
    parent = scripts.key(rpm=2)
    first, second = scripts.key(parent=parent, rpm=5), scripts.key(parent=parent, rpm=5)
    assert scripts.admit([first, parent], 0)[0] == 1
    assert scripts.admit([second, parent], 1)[0] == 1
    refused = scripts.admit([first, parent], 2)
    assert refused[0] == 0 and refused[3] == 2  # the parent's limit refused it
    # A refusal records nothing: the child's own window holds one request.
    assert scripts.client.zcard(KeyKeys(first).requests) == 1


@pytest.mark.parametrize("change", ["disabled", "expired", "deleted"])
def test_revoked_disabled_or_expired_keys_are_refused(scripts, change):
    key = scripts.key()
    record = KeyKeys(key).record
    if change == "disabled":
        scripts.client.hset(record, "disabled", "1")
    elif change == "expired":
        scripts.client.hset(record, "expires_at", "1.0")
    else:
        scripts.client.delete(record)
    refused = scripts.admit([key], 5_000)
    assert refused[:2] == [0, b"revoked"] and refused[4] == change.encode()


def test_a_peek_checks_and_records_nothing(scripts):
    key = scripts.key(rpm=1)
    assert scripts.admit([key], 0)[0] == 1
    peeked = scripts.admit([key], 1, lease="")
    assert peeked == [1, 1, 0, WINDOW_MS - 1, -1, -1, -1]
    assert scripts.client.zcard(KeyKeys(key).requests) == 1
