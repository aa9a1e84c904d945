"""One worker per key (a customer), started on demand, so each customer's queue is worked
through in order while different customers proceed in parallel.

What is found queued at start (or on taking shards over) is a backlog: thousands of
customers at once after an outage. Their workers start BACKLOG at a time, so that a
customer who writes now, whose worker starts at once, is not queued behind all of them
for every statement (the review measured 35.8 s for a new customer's first answer behind
100,983 queued rows)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Hashable

from bridge.store.queries import LeaseLost

log = logging.getLogger(__name__)

BACKLOG = 16  # backlog workers running at once, per direction


class Drainer:
    def __init__(self, work: Callable[[Hashable], Awaitable[None]], name: str) -> None:
        self._work = work
        self._name = name
        self._running: dict[Hashable, asyncio.Task] = {}
        self._again: set[Hashable] = set()
        self._stopping = False
        self._backlog: dict[Hashable, None] = {}  # waiting to start, oldest first
        self._backlog_running: set[Hashable] = set()

    def kick(self, key: Hashable, backlog: bool = False) -> None:
        """There may be work for key: run the worker, or have the running one look again.
        backlog: found queued (not just now): started BACKLOG at a time, after what comes
        in now."""
        if self._stopping:
            return
        if key in self._running:
            self._again.add(key)
            return
        if backlog and len(self._backlog_running) >= BACKLOG:
            self._backlog[key] = None
            return
        self._backlog.pop(key, None)  # in the backlog, but something new came: now
        if backlog:
            self._backlog_running.add(key)
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
            if key in self._backlog_running:
                self._backlog_running.discard(key)
                if self._backlog and not self._stopping:
                    self.kick(next(iter(self._backlog)), backlog=True)

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
