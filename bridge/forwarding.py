"""Entry points on every daemon of a database.

A daemon that does not work the customers (it stands by, or it is paused) still receives
what the platforms send it: a Telegram webhook or a Slack request behind a load balancer, a
Slack Socket Mode event (Slack spreads an app's events over its connections). It stores
each event in the `forwarded` table, which wakes the working daemon (NOTIFY); that one
handles the event as if it had received it itself, oldest first, and only then deletes the
row, fenced by its lease. Nothing a platform hands any daemon is lost, and only the working
daemon acts on it.

An adapter that must receive alone (Adapter.receives_alone: a Telegram bot polled with
getUpdates) receives only on the working daemon.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import asyncpg

from bridge.adapter import Adapter, Unstorable
from bridge.events import Inbound, inbound_from_json, inbound_to_json
from bridge.http import HttpServer
from bridge.metrics import Metrics
from bridge.relay import Relay
from bridge.store import Store
from bridge.store.forwarded_queue import CHANNEL
from bridge.store.queries import LeaseLost
from bridge.tasks import cancel_and_wait

log = logging.getLogger(__name__)

POLL = 2.0  # seconds between looks at the table, should a wake-up be missed
BATCH = 100
# Not "helpdesk-bridge <holder>": those sessions are the live daemons (bridge/leadership.py).
SESSION_NAME = "helpdesk-bridge-forwarded"
END_CALL = "end_call"  # forwarded beside the adapters' events: the call page's "End call"


class EntryPoints:
    def __init__(self, store: Store, adapters: list[Adapter], http: HttpServer,
                 metrics: Metrics, working: Callable[[], bool]) -> None:
        """working(): True while this daemon works the customers (its lease is valid)."""
        self.store = store
        self.adapters = adapters
        self.http = http
        self.metrics = metrics
        self.relay: Relay | None = None  # set once this daemon works the customers
        self._working = working
        self._receiving: list[Adapter] = []
        self._woken = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._worker: asyncio.Task | None = None

    # --- the adapters ------------------------------------------------------------------

    async def receive(self, event: Inbound) -> None:
        """The adapters' sink: handled here by the working daemon, else stored for it."""
        if self.relay is not None and self._working():
            await self.relay.handle(event)
            return
        await self.store.forward(inbound_to_json(event))
        self.metrics.forwarded.inc()

    async def open(self, alone_too: bool) -> None:
        """Start receiving from the adapters not receiving yet; alone_too: also those that
        must receive alone (this daemon works the customers)."""
        for adapter in self.adapters:
            if adapter not in self._receiving and (alone_too or not adapter.receives_alone):
                await adapter.start(self.receive, self.http)
                self._receiving.append(adapter)

    async def close(self) -> None:
        """Stop receiving. What arrives meanwhile stays with the platform, for the next start."""
        for adapter in self._receiving:
            await adapter.stop()
        self._receiving.clear()

    async def end_call(self, conversation_id: int, key: str) -> bool:
        """The call page's "End call" (bridge/callpage.py), which may reach any daemon.
        False: no such conversation."""
        if self.relay is not None and self._working():
            return await self.relay.end_call(conversation_id, key)
        conversation = await self.store.conversation(conversation_id)
        if conversation is None or conversation.ticket_chat_id is None:
            return False
        await self.store.forward({"kind": END_CALL, "conversation_id": conversation_id,
                                  "key": key})
        self.metrics.forwarded.inc()
        return True

    # --- what other daemons stored -----------------------------------------------------

    def start_handling(self) -> None:
        """This daemon works the customers (self.relay): handle what the others store."""
        self._worker = asyncio.create_task(self._handle_forwarded(), name="forwarded")

    async def stop_handling(self) -> None:
        if self._worker is not None:
            await cancel_and_wait([self._worker])
            self._worker = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def _handle_forwarded(self) -> None:
        while True:
            self._woken.clear()
            try:
                await self._listen()
                await self._handle_stored()
            except LeaseLost:
                pass  # paused: the rows stay, for this daemon once resumed or for another
            except Exception as error:
                log.warning("could not handle the forwarded events (%s); trying again",
                            type(error).__name__)
            try:
                await asyncio.wait_for(self._woken.wait(), POLL)
            except asyncio.TimeoutError:
                pass

    async def _listen(self) -> None:
        if self._listener is None or self._listener.is_closed():
            self._listener = None
            listener = await self.store.dedicated_connection(SESSION_NAME)
            await listener.add_listener(CHANNEL, lambda *_notification: self._woken.set())
            self._listener = listener

    async def _handle_stored(self) -> None:
        while stored := await self.store.oldest_forwarded(BATCH):
            for row_id, data in stored:
                self.store.check_fence()
                await self._handle_one(data)
                await self.store.finish_forwarded(row_id)

    async def _handle_one(self, data: dict) -> None:
        """An event at fault is dropped, said in the log: kept, it would stop every one
        behind it."""
        if data.get("kind") == END_CALL:
            await self.relay.end_call(data["conversation_id"], data["key"])
            return
        try:
            event = inbound_from_json(data)
        except (KeyError, TypeError, ValueError):
            log.error("a forwarded event this version cannot read was dropped")
            return
        try:
            await self.relay.handle(event)
        except Unstorable as error:
            log.error("a forwarded event could not be stored (%s); dropped", error)
