"""Tasks started and not awaited, kept referenced until they end.

The event loop keeps only a weak reference to a task: one that nothing else references
can be garbage-collected before it finishes (Python's documentation for create_task)."""
from __future__ import annotations

import asyncio
from typing import Coroutine, Iterable


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, coroutine: Coroutine, name: str | None = None) -> asyncio.Task:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel(self, spare: asyncio.Task | None = None) -> None:
        """Cancel what still runs, and wait for it to end (all but `spare`: the task asking,
        when it is one of these)."""
        await cancel_and_wait([task for task in self._tasks if task is not spare])


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel tasks and wait until they have ended, cancelling again while they run: on
    Python 3.11 asyncio.wait_for swallows a cancellation that races the end of what it
    waits on (fixed in 3.12), and a loop around one would otherwise run on, and its
    daemon would never stop."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
