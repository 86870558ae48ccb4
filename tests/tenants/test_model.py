"""What a minted key may ask for, as a property: whatever is accepted fits inside its parent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velesio_core.tenants.model import LIMIT_NAMES, ApiKey, KeyLimits, KeySpec, MintRefused, check_within_parent
from velesio_core.tenants.scopes import NOT_MINTABLE, Scope
from velesio_core.tenants.secrets import ServerSecret, key_id_of, new_key_id, new_secret

NOW = 1_000_000.0
limits = st.builds(KeyLimits, **{name: st.none() | st.integers(1, 100) for name in LIMIT_NAMES})
scopes = st.sets(st.sampled_from(list(Scope)), min_size=1).map(sorted)
models = st.none() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, unique=True)


@given(
    parent_scopes=scopes, parent_models=models, parent_limits=limits, parent_weight=st.integers(1, 10),
    parent_life=st.none() | st.floats(1, 10_000), child_scopes=scopes, child_models=models, child_limits=limits,
    child_weight=st.integers(1, 10), child_life=st.none() | st.floats(1, 10_000),
)  # fmt: skip
def test_an_accepted_child_never_exceeds_its_parent(
    parent_scopes, parent_models, parent_limits, parent_weight, parent_life,
    child_scopes, child_models, child_limits, child_weight, child_life,
):  # fmt: skip
    parent = ApiKey(id="p", name="p", scopes=frozenset(parent_scopes), models=parent_models and tuple(parent_models),
                    limits=parent_limits, weight=parent_weight,
                    expires_at=NOW + parent_life if parent_life else None)  # fmt: skip
    spec = KeySpec(name="c", scopes=child_scopes, models=child_models, limits=child_limits, weight=child_weight,
                   expires_in=child_life)  # fmt: skip
    try:
        expires_at, granted_models = check_within_parent(spec, parent, max_ttl_s=3600, now=NOW)
    except MintRefused:
        return
    assert not set(spec.scopes) & NOT_MINTABLE
    assert Scope.ADMIN in parent.scopes or set(spec.scopes) <= parent.scopes
    if parent.models is not None:
        assert granted_models is not None and set(granted_models) <= set(parent.models)
    for name in LIMIT_NAMES:
        mine, cap = getattr(spec.limits, name), getattr(parent.limits, name)
        assert cap is None or mine is None or mine <= cap
    assert spec.weight <= parent.weight
    assert expires_at <= NOW + 3600
    assert parent.expires_at is None or expires_at <= parent.expires_at


def test_a_child_asking_for_more_is_refused_with_the_reason():
    parent = ApiKey(id="p", name="p", scopes=frozenset({Scope.LLM, Scope.MINT}), models=("a",),
                    limits=KeyLimits(rpm=10))  # fmt: skip
    cases = {
        "scopes": KeySpec(name="c", scopes=[Scope.IMAGES]),
        "models": KeySpec(name="c", scopes=[Scope.LLM], models=["b"]),
        "limits": KeySpec(name="c", scopes=[Scope.LLM], limits=KeyLimits(rpm=11)),
        "expires_in": KeySpec(name="c", scopes=[Scope.LLM], expires_in=7200),
    }
    for field, spec in cases.items():
        with pytest.raises(MintRefused, match=field):
            check_within_parent(spec, parent, max_ttl_s=3600, now=NOW)


def test_a_secret_carries_its_id_and_only_its_hmac_is_kept():
    key_id = new_key_id()
    secret = new_secret(key_id)
    assert key_id_of(secret) == key_id
    assert key_id_of("vsk_short_x") is None and key_id_of("sk-openai") is None
    server = ServerSecret(b"s" * 32)
    digest = server.digest(secret)
    assert secret not in digest and server.matches(secret, digest)
    assert not ServerSecret(b"t" * 32).matches(secret, digest)
    assert "s" * 32 not in repr(server)
