"""A terminal chat: the demo's UI.

It reads lines from stdin for one customer: plain text is a message, a number picks a
choice of the last prompt, /new /conversations /close /call /help are commands; what the
helpdesk says is printed. (testing/console.py drives it for many customers in tests.)
"""
from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
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
    stdin: bool = True           # read the terminal; off when driven by code (tests)


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
        self._refs = itertools.count(1)
        self._reader: asyncio.Task | None = None

    # --- the adapter contract ------------------------------------------------------

    @property
    def receives_alone(self) -> bool:
        return True  # this process's terminal: what is typed here is answered here

    async def start(self, sink: Sink, http: HttpServer | None = None) -> None:
        self._sink = sink
        if self.settings.stdin:
            self._reader = asyncio.create_task(self._read_terminal())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    async def deliver(self, user: ChatUser, message: Outgoing) -> str:
        if message.kind == "edit":
            for item in self.shown.get(user.user_id, []):
                if item.ref == message.edit_ref:
                    item.message.buttons = []
            if not message.text:
                return message.edit_ref
        ref = str(next(self._refs))
        shown = Shown(ref, message, render(message))
        self.shown.setdefault(user.user_id, []).append(shown)
        if self.output is not None:
            print(shown.text, file=self.output, flush=True)
        return ref

    # --- what a customer does -----------------------------------------------------

    def user(self, user_id: str) -> ChatUser:
        return ChatUser("console", ACCOUNT, user_id, user_id)

    async def say(self, user_id: str, text: str, message_id: str | None = None) -> None:
        # Unique across restarts: the core ignores a message id it has seen before.
        message_id = message_id or uuid.uuid4().hex
        await self._sink(InboundMessage(self.user(user_id), text, message_id))

    async def command(self, user_id: str, name: str) -> None:
        await self._sink(Command(self.user(user_id), name))

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
