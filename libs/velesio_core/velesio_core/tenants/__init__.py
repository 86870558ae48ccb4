"""Tenants: API keys with scopes, limits and quotas, stored in Redis and enforced there.

One concept per module: :mod:`.model` (what a key is), :mod:`.secrets` (the secret a client holds and
the HMAC that is all Redis ever sees), :mod:`.scopes` (what each scope lets a key do),
:mod:`.store` (keys in Redis), :mod:`.authn` (from a request's credential to a principal),
:mod:`.admission` (the atomic limit checks and leases), :mod:`.headers` (OpenAI's rate-limit
headers), :mod:`.audit` (who changed what), :mod:`.cli` (``velesio-keys``).
"""
