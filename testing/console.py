"""The console adapter driven by code: many customers at once, as errbot's test backend
does for errbot. `say(user, text)`, `press(user, label)` and `command(user, name)` in;
`expect(user, text)` out; `fail_next(error)` makes deliveries fail as a platform would."""
from __future__ import annotations

import asyncio
from collections import defaultdict

from adapters.console import ConsoleAdapter
from adapters.console.adapter import Shown
from bridge.events import ButtonPress, ChatUser, Outgoing


class ConsoleHarness(ConsoleAdapter):
    def __init__(self) -> None:
        super().__init__()
        # One condition per user: a delivery wakes only those waiting on that user.
        self._changed: dict[str, asyncio.Condition] = defaultdict(asyncio.Condition)
        self._failures: list[Exception] = []

    async def deliver(self, user: ChatUser, message: Outgoing) -> str:
        if self._failures:
            raise self._failures.pop(0)
        ref = await super().deliver(user, message)
        changed = self._changed[user.user_id]
        async with changed:
            changed.notify_all()
        return ref

    def fail_next(self, *errors: Exception) -> None:
        """Make the next deliveries fail (a DeliveryError as a platform would: a 429, a 5xx,
        a blocked bot; any other error as a bug would)."""
        self._failures.extend(errors)

    async def press(self, user_id: str, label: str, timeout: float = 10.0) -> None:
        """Press the button whose label starts with `label` on the latest prompt showing it
        (waiting for one to be shown)."""
        def find() -> str | None:
            for item in reversed(self.shown.get(user_id, [])):
                for button in item.message.buttons:
                    if button.label.startswith(label):
                        return button.action
            return None

        changed = self._changed[user_id]
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: find() is not None), timeout)
            except asyncio.TimeoutError:
                raise LookupError(f"no button {label!r} shown to {user_id}") from None
        await self._sink(ButtonPress(self.user(user_id), find()))

    async def press_action(self, user_id: str, action: str) -> None:
        """Send any callback payload at all (a forged one)."""
        await self._sink(ButtonPress(self.user(user_id), action))

    def shown_texts(self, user_id: str) -> list[str]:
        return [item.text for item in self.shown.get(user_id, [])]

    async def expect(self, user_id: str, fragment: str, timeout: float = 10.0,
                     count: int = 1) -> Shown:
        """Wait until `count` shown messages contain fragment; return the latest one."""
        def matched() -> list[Shown]:
            return [s for s in self.shown.get(user_id, []) if fragment in s.text]

        changed = self._changed[user_id]
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: len(matched()) >= count), timeout)
            except asyncio.TimeoutError:
                shown = "\n".join(self.shown_texts(user_id)) or "(nothing)"
                raise AssertionError(f"{user_id} was not shown {fragment!r} x{count} within "
                                     f"{timeout}s; shown:\n{shown}") from None
        return matched()[-1]
