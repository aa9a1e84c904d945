"""Named places where a test can have the process SIGKILLed, to prove that a crash at the
worst moment loses nothing. Set BRIDGE_CRASH_POINT=<name>; unset, each call is one compare."""
from __future__ import annotations

import os
import signal

_armed = os.environ.get("BRIDGE_CRASH_POINT")


def crash_point(name: str) -> None:
    if _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
