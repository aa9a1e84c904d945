"""Recording what a far end already did (the helpdesk took a message, the platform showed
a reply). Unlike most writes, such a record cannot be left for a later retry of the whole
step: that retry would do it again, and the far end would hold it twice."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

from bridge.backoff import backoff
from bridge.store.driver import Duplicate
from bridge.store.queries import LeaseLost

log = logging.getLogger(__name__)

T = TypeVar("T")

# About 6 s in all: waits out a database restart or failover.
ATTEMPTS = 6


async def record(write: Callable[[], Awaitable[T]], what: str) -> T:
    """Run write, retrying for a while when the database fails (then it raises). A write
    refused as a duplicate, or for a lost lease, is not retried."""
    for attempt in range(ATTEMPTS - 1):
        try:
            return await write()
        except (Duplicate, LeaseLost):
            raise  # a unique key already taken stays taken, a lost lease lost
        except Exception:
            log.warning("could not record that %s; retrying", what, exc_info=True)
            await asyncio.sleep(backoff(attempt, 0.2))
    return await write()
