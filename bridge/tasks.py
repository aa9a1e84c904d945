"""Tasks started and not awaited, kept referenced until they end.

The event loop keeps only a weak reference to a task: one that nothing else references
can be garbage-collected before it finishes (Python's documentation for create_task)."""
from __future__ import annotations

import asyncio
from typing import Coroutine


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
        tasks = [task for task in self._tasks if task is not spare]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
