"""Finished queue rows are deleted once they are old enough: a daemon that runs for months
would otherwise keep every message it ever relayed (about 80,000 rows an hour at 20
messages/s). They are kept for a while because they still matter: their dedupe keys turn
away a message delivered again (Telegram keeps an update for 24 hours), and an operator
looking into a complaint can see what went where."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bridge.metrics import Metrics
from bridge.store import Store
from bridge.store.models import utcnow
from bridge.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EVERY = 3600.0  # seconds between prunes


class Pruner:
    def __init__(self, store: Store, keep_days: float, metrics: Metrics,
                 every: float = EVERY) -> None:
        self.store = store
        self.keep_days = keep_days
        self.metrics = metrics
        self.every = every
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prune")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def prune_once(self) -> tuple[int, int]:
        up, down = await self.store.prune(utcnow() - timedelta(days=self.keep_days))
        self.metrics.pruned.labels("to_helpdesk").inc(up)
        self.metrics.pruned.labels("to_customer").inc(down)
        if up or down:
            log.info("deleted finished rows older than %g days: %d to the helpdesk, "
                     "%d to customers", self.keep_days, up, down)
        return up, down

    async def _run(self) -> None:
        while True:  # at start too: a daemon restarted often must still prune
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be away; the next round retries
                log.warning("pruning finished rows failed: %s", type(error).__name__)
            await asyncio.sleep(self.every)
