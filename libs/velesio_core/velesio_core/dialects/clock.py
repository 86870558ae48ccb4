"""A reading of the clock, taken by a route and passed to the encoders, which never read one.

Encoders are pure: the same result and the same reading give the same bytes, which is what lets
them be tested without waiting or patching time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Instant:
    #: Seconds since the epoch: for the timestamps an answer carries.
    wall: float
    #: ``time.monotonic()``: for the durations an answer reports, which a clock change must not bend.
    monotonic: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.time(), time.monotonic())


#: What a stateful stream encoder reads the time from, once per chunk (routes pass ``Instant.now``).
Clock = Callable[[], Instant]
