"""How long to wait before trying again: doubling from `base`, at most `cap`.

With jitter (full jitter: anywhere from 0 to the delay), thousands of clients that failed
together do not come back together."""
from __future__ import annotations

import random


def backoff(attempt: int, base: float, cap: float = 300.0, jitter: bool = False) -> float:
    delay = min(cap, base * 2 ** min(attempt, 30))
    return random.uniform(0, delay) if jitter else delay


RETRY_CAP = 300.0  # seconds between attempts, at most, while a far end is down


def retry_delay(attempt: int) -> float:
    """The outboxes' one retry policy, towards the helpdesk and towards the platforms."""
    return backoff(attempt, 0.5, RETRY_CAP)
