"""Finished queue rows are deleted once they are old enough: a daemon that runs for months
would otherwise keep every message it ever relayed (about 80,000 rows an hour at 20
messages/s). They are kept for a while because they still matter: their dedupe keys turn
away a message delivered again (Telegram keeps an update for 24 hours), and an operator
looking into a complaint can see what went where."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bridge.http import LINK_DAYS
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.store.models import utcnow
from bridge.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EVERY = 3600.0  # seconds between prunes


class Pruner:
    def __init__(self, store: Store, keep_days: float, metrics: Metrics,
                 every: float = EVERY, forget_after_days: float = 0.0) -> None:
        """keep_days: finished rows (0: kept); forget_after_days: idle customers (0:
        kept)."""
        self.store = store
        self.keep_days = keep_days
        self.forget_after_days = forget_after_days
        self.metrics = metrics
        self.every = every
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prune")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def forget_idle_customers(self) -> int:
        """Ask the daemons working them to forget the customers idle for forget_after_days
        (bridge/customer_data.py): how many were asked for."""
        idle = await self.store.idle_customers(utcnow() - timedelta(days=self.forget_after_days))
        for customer_id in idle:
            await self.store.forward({"kind": "forget", "customer_id": customer_id},
                                     self.store.shard_of(customer_id))
        if idle:
            log.info("forgetting %d customers idle for %g days", len(idle),
                     self.forget_after_days)
        return len(idle)

    async def prune_once(self) -> tuple[int, int]:
        if self.forget_after_days:
            await self.forget_idle_customers()
        # a revoked link is kept until it would have expired anyway
        await self.store.prune_revoked_files(utcnow() - timedelta(days=LINK_DAYS + 1))
        if not self.keep_days:
            return 0, 0
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
