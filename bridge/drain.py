"""One worker per key (a customer), started on demand, so each customer's queue is worked
through in order while different customers proceed in parallel."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Hashable

from bridge.store.queries import LeaseLost

log = logging.getLogger(__name__)


class Drainer:
    def __init__(self, work: Callable[[Hashable], Awaitable[None]], name: str) -> None:
        self._work = work
        self._name = name
        self._running: dict[Hashable, asyncio.Task] = {}
        self._again: set[Hashable] = set()
        self._stopping = False

    def kick(self, key: Hashable) -> None:
        """There may be work for key: run the worker, or have the running one look again."""
        if self._stopping:
            return
        if key in self._running:
            self._again.add(key)
            return
        self._running[key] = asyncio.create_task(self._run(key), name=f"{self._name}-{key}")

    def running(self) -> list[Hashable]:
        """The keys whose worker runs now."""
        return list(self._running)

    async def _run(self, key: Hashable) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self._work(key)
                except asyncio.CancelledError:
                    raise
                except LeaseLost:
                    # another daemon works this customer now, or will once this one's
                    # leases are renewed again (then the relay kicks every worker again)
                    log.info("%s worker stopped: this daemon does not hold the customer's "
                             "shard", self._name)
                    break
                except Exception:
                    # A bug must not silently park a customer's queue: log, pause, retry.
                    log.exception("%s worker failed; retrying in 1s", self._name)
                    await asyncio.sleep(1)
                    self._again.add(key)
                if key not in self._again or self._stopping:
                    break
        finally:
            self._running.pop(key, None)

    async def stop(self, grace: float) -> None:
        """Let workers finish for up to grace seconds, then cancel the rest. What a cancelled
        worker had not finished stays queued in the database for the next start."""
        self._stopping = True
        tasks = list(self._running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
