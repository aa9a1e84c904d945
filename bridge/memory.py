"""The daemon's garbage collector, set for a process that runs for months.

CPython's full collection walks every tracked object. After the imports (python-telegram-bot,
SQLAlchemy, Socket.IO, aiohttp, pydantic) that is ~140,000 objects and ~90 ms on the bench
machine, in which the event loop relays nothing: the bench saw three to five such pauses in
a 10-second run at 200 messages/s, which made most of the bridge's p99 (bench/RESULTS.md).
What the imports made (modules, classes, functions) lives as long as the process, so it is
moved out of the collector's sight once, before the bridge starts; what the bridge makes
afterwards (connections, customers, messages) is collected as usual.

An application embedding the bridge decides about its own process: this runs only in ours.
"""
from __future__ import annotations

import gc


def settle_imports() -> None:
    """Call once every module is imported and before the bridge starts."""
    gc.collect()  # what the imports left as garbage goes now, not frozen forever
    gc.freeze()
