"""Entry points on every daemon of a database.

Every daemon receives what the platforms send it: a Telegram webhook or a Slack request
behind a load balancer, a Slack Socket Mode event (Slack spreads an app's events over its
connections). An event for a customer another daemon works (it holds their shard,
bridge/shards.py) is stored in the `forwarded` table with that shard, which wakes the
others (NOTIFY); the holder handles the event as if it had received it itself, oldest
first, and only then deletes the row, fenced by the shard's lease. Nothing a platform hands
any daemon is lost, and only the daemon working the customer acts on it.

The helpdesk's events travel the same way. A daemon that let a shard go stays in its
customers' rooms, and what it hears there for them is stored for the holder (shown once:
the holder hears most of it too, and the to-customer queue turns the copy away). So an
answer emitted while a shard moves, or while its holder is dead and its lease not yet
run out, still reaches the customer.

An adapter that must receive alone (Adapter.receives_alone: a Telegram bot polled with
getUpdates) receives only on the daemon holding shard 0.

An operator's changes to a customer (forget, block, unblock: bridge/customer_data.py) are
stored the same way, for the daemon working that customer; a daemon alone on its database
(SQLite) looks for those.
"""
from __future__ import annotations

import asyncio
import logging

import asyncpg

from bridge.adapter import Adapter, Unstorable
from bridge.customer_data import CHANGES
from bridge.events import Inbound, inbound_from_json, inbound_to_json
from bridge.http import HttpServer
from bridge.metrics import Metrics
from bridge.protocol import HELPDESK_EVENT, event_from_json
from bridge.relay import NotOwned, Relay
from bridge.shards import Shards
from bridge.store import Store
from bridge.store.forwarded_queue import CHANNEL
from bridge.store.queries import LeaseLost
from bridge.tasks import cancel_and_wait

log = logging.getLogger(__name__)

POLL = 2.0  # seconds between looks at the table, should a wake-up be missed
BATCH = 100
# Not "helpdesk-bridge <holder>": those sessions are the live daemons (bridge/shards.py).
SESSION_NAME = "helpdesk-bridge-forwarded"
END_CALL = "end_call"  # forwarded beside the adapters' events: the call page's "End call"


class EntryPoints:
    def __init__(self, store: Store, adapters: list[Adapter], http: HttpServer,
                 metrics: Metrics, shards: Shards | None) -> None:
        """shards: None when this daemon alone works the database's customers."""
        self.store = store
        self.adapters = adapters
        self.http = http
        self.metrics = metrics
        self.relay: Relay | None = None  # set before any adapter receives
        self.shards = shards
        self._receiving: list[Adapter] = []
        self._woken = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._worker: asyncio.Task | None = None

    # --- the adapters ------------------------------------------------------------------

    async def receive(self, event: Inbound) -> None:
        """The adapters' sink: handled here when this daemon works the customer, else
        stored for the daemon that does."""
        try:
            await self.relay.handle(event)
        except NotOwned as elsewhere:
            await self.store.forward(inbound_to_json(event), elsewhere.shard)
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
        try:
            return await self.relay.end_call(conversation_id, key)
        except NotOwned as elsewhere:
            await self.store.forward({"kind": END_CALL, "conversation_id": conversation_id,
                                      "key": key}, elsewhere.shard)
            self.metrics.forwarded.inc()
            return True

    # --- what other daemons stored -----------------------------------------------------

    def start_handling(self) -> None:
        """Handle what the other daemons store for the customers this one works."""
        self._worker = asyncio.create_task(self._handle_forwarded(), name="forwarded")

    def wake(self) -> None:
        """This daemon took shards: look for what was stored for them at once."""
        self._woken.set()

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
            except (LeaseLost, NotOwned):
                pass  # the shard moved: the rows stay, for the daemon that holds it now
            except Exception as error:
                log.warning("could not handle the forwarded events (%s); trying again",
                            type(error).__name__)
            try:
                await asyncio.wait_for(self._woken.wait(), POLL)
            except asyncio.TimeoutError:
                pass

    async def _listen(self) -> None:
        if self.shards is None:
            return  # alone: nobody to wake it; the operator's changes wait up to POLL
        if self._listener is None or self._listener.is_closed():
            self._listener = None
            listener = await self.store.dedicated_connection(SESSION_NAME)
            await listener.add_listener(CHANNEL, self._on_notify)
            self._listener = listener

    def _owned(self) -> list[int]:
        """Alone on the database (SQLite), this daemon works every customer: shard 0."""
        return [0] if self.shards is None else self.shards.owned()

    def _on_notify(self, _connection, _pid, _channel, payload: str) -> None:
        """An event was stored for the holder of shard `payload`: this daemon looks only
        when that is itself (a shard it takes later is looked at on taking it, wake)."""
        if not payload.isdigit() or int(payload) in self.shards.owned():
            self._woken.set()

    async def _handle_stored(self) -> None:
        while True:
            stored = await self.store.oldest_forwarded(self._owned(), BATCH)
            for row_id, data, shard in stored:
                if self.shards is not None:
                    self.shards.check(shard)
                await self._handle_one(data)
                await self.store.finish_forwarded(row_id, shard)
            if len(stored) < BATCH:
                # all there was: what is stored from now on wakes this daemon again
                return

    async def _handle_one(self, data: dict) -> None:
        """An event at fault is dropped, said in the log: kept, it would stop every one
        behind it."""
        if data.get("kind") == END_CALL:
            await self.relay.end_call(data["conversation_id"], data["key"])
            return
        if data.get("kind") in CHANGES:  # an operator's (helpdesk-bridge customers)
            await self.relay.carry_out(data["kind"], data["customer_id"])
            return
        if data.get("kind") == HELPDESK_EVENT:
            try:
                helpdesk_event = event_from_json(data)
            except (KeyError, TypeError):
                log.error("a forwarded helpdesk event this version cannot read was dropped")
                return
            await self.relay.on_helpdesk_event(helpdesk_event)
            return
        try:
            event = inbound_from_json(data)
        except (KeyError, TypeError, ValueError):
            log.error("a forwarded event this version cannot read was dropped")
            return
        try:
            await self.relay.handle(event)
        except NotOwned as elsewhere:  # stored for another shard (by an older version)
            await self.store.forward(data, elsewhere.shard)
        except Unstorable as error:
            log.error("a forwarded event could not be stored (%s); dropped", error)
