"""The event loop the daemon runs on: uvloop where it is installed (Linux and macOS get it
with the package), else asyncio's own. The relay spends about a fifth of its CPU in the
loop and its socket transports; on uvloop the bridge used ~10% less CPU per relayed message
(bench/RESULTS.md). An application embedding the bridge keeps whatever loop it runs."""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
