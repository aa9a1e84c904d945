"""A terminal chat: the demo's UI, and the core's end-to-end test harness.

As a harness (the role errbot's test backend plays), many customers can talk through it:
`say(user, text)` and `press(user, label)` in, `expect(user, text)` out. As a terminal UI,
it reads lines from stdin for one customer: plain text is a message, a number picks a
choice of the last prompt, /new /conversations /close /call /help are commands.
"""
from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Awaitable, Callable, TextIO

from adapters.console.render import render
from bridge.adapter import Adapter, Sink
from bridge.config import StrictModel
from bridge.events import COMMANDS, ButtonPress, ChatUser, Command, InboundMessage, Outgoing
from bridge.http import HttpServer

ACCOUNT = "console"


class ConsoleSettings(StrictModel):
    user: str = "console-user"   # the customer the terminal speaks for
    stdin: bool = True           # read the terminal; off when embedded as a harness


@dataclass
class Shown:
    ref: str
    message: Outgoing
    text: str


class ConsoleAdapter(Adapter):
    name = "console"
    Settings = ConsoleSettings

    def __init__(self, settings: ConsoleSettings | None = None, *,
                 output: TextIO | None = None,
                 extra_commands: dict[str, Callable[[str], Awaitable[str]]] | None = None) -> None:
        self.settings = settings or ConsoleSettings(stdin=False)
        self.output = output
        self.extra_commands = extra_commands or {}
        self.shown: dict[str, list[Shown]] = {}
        self.closed = asyncio.Event()
        self._sink: Sink | None = None
        # One condition per user: a delivery wakes only those waiting on that user.
        self._changed: dict[str, asyncio.Condition] = defaultdict(asyncio.Condition)
        self._refs = itertools.count(1)
        self._reader: asyncio.Task | None = None
        self._failures: list[Exception] = []

    # --- the adapter contract ------------------------------------------------------

    async def start(self, sink: Sink, http: HttpServer | None = None) -> None:
        self._sink = sink
        if self.settings.stdin:
            self._reader = asyncio.create_task(self._read_terminal())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    async def deliver(self, user: ChatUser, message: Outgoing) -> str:
        if self._failures:
            raise self._failures.pop(0)
        if message.kind == "edit" and message.edit_ref:
            for item in self.shown.get(user.user_id, []):
                if item.ref == message.edit_ref:
                    item.message.buttons = []
            if not message.text:
                return message.edit_ref
        ref = str(next(self._refs))
        shown = Shown(ref, message, render(message))
        changed = self._changed[user.user_id]
        async with changed:
            self.shown.setdefault(user.user_id, []).append(shown)
            changed.notify_all()
        if self.output is not None:
            print(shown.text, file=self.output, flush=True)
        return ref

    # --- harness -------------------------------------------------------------------

    def fail_next(self, *errors: Exception) -> None:
        """Make the next deliveries fail as a platform would (a 429, a 5xx, a blocked bot)."""
        self._failures.extend(errors)

    def user(self, user_id: str) -> ChatUser:
        return ChatUser("console", ACCOUNT, user_id, user_id)

    async def say(self, user_id: str, text: str, message_id: str | None = None) -> None:
        # Unique across restarts: the core ignores a message id it has seen before.
        message_id = message_id or uuid.uuid4().hex
        await self._sink(InboundMessage(self.user(user_id), text, message_id))

    async def command(self, user_id: str, name: str) -> None:
        await self._sink(Command(self.user(user_id), name))

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
        """Send any callback payload at all (a forged one, in tests)."""
        await self._sink(ButtonPress(self.user(user_id), action))

    def texts(self, user_id: str) -> list[str]:
        return [item.text for item in self.shown.get(user_id, [])]

    async def expect(self, user_id: str, fragment: str, timeout: float = 10.0,
                     count: int = 1) -> Shown:
        """Wait until `count` shown messages contain fragment; return the latest one."""
        async def matched() -> list[Shown]:
            return [s for s in self.shown.get(user_id, []) if fragment in s.text]

        changed = self._changed[user_id]
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(
                    lambda: len([s for s in self.shown.get(user_id, [])
                                 if fragment in s.text]) >= count), timeout)
            except asyncio.TimeoutError:
                shown = "\n".join(self.texts(user_id)) or "(nothing)"
                raise AssertionError(f"{user_id} was not shown {fragment!r} x{count} within "
                                     f"{timeout}s; shown:\n{shown}") from None
        return (await matched())[-1]

    # --- terminal ------------------------------------------------------------------

    async def _read_terminal(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                await self._terminal_line(line.decode(errors="replace").strip())
            except Exception as error:  # keep the terminal alive; say what went wrong
                self._say_locally(f"!! {error}")
        self.closed.set()

    async def _terminal_line(self, line: str) -> None:
        user = self.settings.user
        if not line:
            return
        if line in ("/quit", "/exit"):
            self.closed.set()
            return
        if line.startswith("/"):
            name, _, argument = line[1:].partition(" ")
            if name in self.extra_commands:
                self._say_locally(await self.extra_commands[name](argument))
            elif name in COMMANDS:
                await self.command(user, name)
            else:
                known = sorted(set(COMMANDS) | set(self.extra_commands))
                self._say_locally("commands: " + " ".join(f"/{c}" for c in known) + " /quit")
            return
        if line.isdigit():
            for item in reversed(self.shown.get(user, [])):
                if item.message.buttons:
                    index = int(line) - 1
                    if 0 <= index < len(item.message.buttons):
                        await self._sink(ButtonPress(self.user(user),
                                                     item.message.buttons[index].action))
                        return
                    break
        await self.say(user, line)

    def _say_locally(self, text: str) -> None:
        if self.output is not None and text:
            print(text, file=self.output, flush=True)
