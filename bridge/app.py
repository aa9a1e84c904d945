"""The bridge as a library.

    async with Bridge.from_config_file("bridge.toml") as bridge:
        await bridge.wait_closed()

or, embedded in an application that has its own adapters:

    bridge = Bridge(settings, adapters=[my_adapter])
    await bridge.start(); ...; await bridge.stop()
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from functools import partial
from pathlib import Path

from bridge import ops
from bridge.adapter import Adapter
from bridge.callpage import CallPage
from bridge.calls import Calls
from bridge.config import Settings, load_settings, read_config_file
from bridge.forwarding import EntryPoints
from bridge.helpdesk import HelpdeskLink
from bridge.http import HttpServer
from bridge.logs import add_secrets
from bridge.metrics import Metrics
from bridge.registry import adapter_schemas, build_adapters
from bridge.relay import Relay
from bridge.retention import Pruner
from bridge.shards import SHARDS, Shards, fingerprint
from bridge.single_daemon import DatabaseLock
from bridge.store import Store, upgrade
from bridge.support_mode import SupportMode
from bridge.tasks import Background
from bridge.texts import Texts

log = logging.getLogger(__name__)

SWEEP = 10.0  # seconds between looks for rows queued while their customer's shard moved


def load_config(path: str | Path) -> Settings:
    return load_settings(read_config_file(path), adapter_schemas=adapter_schemas())


class Bridge:
    def __init__(self, settings: Settings, adapters: list[Adapter] | None = None) -> None:
        self.settings = settings
        self.adapters = build_adapters(settings) if adapters is None else adapters
        self.store: Store | None = None
        self.relay: Relay | None = None
        self.http: HttpServer | None = None
        self.pruner: Pruner | None = None
        self._database_lock: DatabaseLock | None = None
        self.metrics = Metrics()
        self.shards: Shards | None = None  # PostgreSQL: the customers this daemon works
        self.entry_points: EntryPoints | None = None
        self.calls: Calls | None = None  # voice calls, with a LiveKit server and a public URL
        self.lost_lease = False  # stopped because another daemon took its customers over
        self._background = Background()
        self._stopped = asyncio.Event()
        self._started = asyncio.Event()  # receiving: ready for a load balancer
        self._stopping = asyncio.Event()
        # Registered before anything can log: the key travels in the helpdesk URL.
        add_secrets(settings.secrets())

    @classmethod
    def from_config_file(cls, path: str | Path, adapters: list[Adapter] | None = None) -> "Bridge":
        return cls(load_config(path), adapters)

    async def start(self) -> None:
        settings = self.settings
        self._stopping.clear()
        self._stopped.clear()
        url = settings.storage.url.get_secret_value()
        self._database_lock = DatabaseLock.for_url(url)
        if self._database_lock is not None:
            self._database_lock.acquire()  # AnotherDaemon: this one must not start
        self.store = Store.from_url(url)
        await upgrade(self.store.engine)
        texts = Texts(settings.texts, settings.default_language)
        for adapter in self.adapters:
            adapter.use_support_mode(SupportMode(self.store))
            adapter.use_texts(texts)
            adapter.use_database(self.store.engine)
        helpdesk = settings.helpdesk
        link_factory = partial(HelpdeskLink, helpdesk.url, helpdesk.api_key.get_secret_value(),
                               namespace=helpdesk.namespace, connections=helpdesk.connections,
                               request_timeout=helpdesk.request_timeout)
        # Links the bridge signs must outlive a restart (the helpdesk may fetch a customer's
        # file hours later), so the key is derived from a configured secret.
        signing_key = hmac.new(helpdesk.api_key.get_secret_value().encode(),
                               b"helpdesk-bridge signed links", hashlib.sha256).digest()
        self.http = HttpServer(settings.http.listen, settings.http.public_url, signing_key)
        self.http.file_revoked = self.store.file_revoked
        await self.http.start()
        if self.store.engine.dialect.name == "postgresql":
            self.shards = Shards(self.store, settings.cluster.lease_seconds,
                                 fingerprint(self._shared_configuration()))
            self.store.fence(self.shards)
        self.entry_points = EntryPoints(self.store, self.adapters, self.http, self.metrics,
                                        self.shards)
        ops.mount(self.http, self.store, self.metrics,
                  lambda: self.relay if self._started.is_set() else None, self.shards)
        calls = settings.calls
        if calls.livekit_url and settings.http.public_url:  # on every daemon: any may serve it
            self.calls = Calls(self.store, self.http, settings.http.public_url)
            CallPage(self.http, calls.livekit_url, calls.sdk, self.entry_points.end_call,
                     self.calls.state).mount()
        self.relay = Relay(self.store, link_factory, self.adapters, self.http,
                           texts,
                           metrics=self.metrics, calls=self.calls, ownership=self.shards,
                           comment_wait=settings.ratings.comment_wait,
                           messages_per_minute=settings.limits.messages_per_minute)
        await self.relay.start()
        self._background.start(self._send_waited_ratings(), name="ratings")
        self.entry_points.relay = self.relay  # before any adapter receives for it
        if self.shards is None:  # this daemon alone works the customers
            await self.entry_points.open(alone_too=True)
            self.entry_points.start_handling()  # an operator's changes
            self._start_pruner()
        else:
            await self._join()
        self._started.set()
        log.info("helpdesk-bridge started with adapters: %s",
                 ", ".join(a.name for a in self.adapters) or "none")

    async def _join(self) -> None:
        """Several daemons may share this database: take this one's share of the customers
        (DifferentConfig if a live daemon runs another configuration)."""
        shards, relay = self.shards, self.relay
        shards.on_taken, shards.on_leaving, shards.on_resumed = \
            self._took, relay.quiet, relay.resume
        shards.on_changed = self._share_limits
        await shards.join()
        await self.entry_points.open(alone_too=shards.primary)
        self.entry_points.start_handling()
        self._background.start(self._keep_shards(), name="shards")
        self._background.start(self._sweep(), name="sweep")
        if not shards.held:
            log.info("standing by: the other daemons work every shard of this database's "
                     "customers; this one stores what it receives for them, and takes its "
                     "share when one stops")

    async def _took(self, taken: set[int]) -> None:
        await self.relay.took(taken)
        self.entry_points.wake()
        if 0 in taken:  # what one daemon alone does moves with shard 0
            await self.entry_points.open(alone_too=True)
            self._start_pruner()

    def _share_limits(self) -> None:
        for adapter in self.adapters:
            adapter.share_limits(len(self.shards.held) / SHARDS)

    def _start_pruner(self) -> None:
        storage = self.settings.storage
        if (storage.keep_days or storage.forget_customers_after_days) and self.pruner is None:
            self.pruner = Pruner(self.store, storage.keep_days, self.metrics,
                                 forget_after_days=storage.forget_customers_after_days)
            self.pruner.start()

    async def _keep_shards(self) -> None:
        await self.shards.run()
        self.lost_lease = True  # for good: another daemon took customers of this one
        await self.stop()

    async def _sweep(self) -> None:
        """Should a row be queued while its customer's shard moved, the holder finds it."""
        while True:
            await asyncio.sleep(SWEEP)
            try:
                await self.relay.resume()
            except Exception as error:
                log.warning("could not look for queued rows (%s)", type(error).__name__)

    async def _send_waited_ratings(self) -> None:
        """Ratings go alone once they waited comment_wait for a comment, looked for a few
        times within the wait (at least every SWEEP seconds)."""
        every = min(SWEEP, max(1.0, self.settings.ratings.comment_wait / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.relay.send_waited_ratings()
            except Exception as error:
                log.warning("could not send the ratings that waited for a comment (%s)",
                            type(error).__name__)

    def _shared_configuration(self) -> list[str]:
        """What every daemon of one database must have alike: the helpdesk and the bots."""
        settings = self.settings
        return [settings.helpdesk.url, *sorted(settings.adapters), *settings.secrets()]

    async def stop(self) -> None:
        if self._stopping.is_set():  # stopping already (the lease lost): wait for it
            await self._stopped.wait()
            return
        self._stopping.set()
        self._started.clear()
        await self._background.cancel(spare=asyncio.current_task())
        if self.pruner is not None:
            await self.pruner.stop()
        if self.entry_points is not None:
            await self.entry_points.stop_handling()
        if self.relay is not None:
            await self.relay.stop()
        if self.entry_points is not None:
            await self.entry_points.close()
        if self.relay is not None:
            await self.relay.close()
        if self.shards is not None:
            await self.shards.close()  # hands over: the others take the shards at once
        if self.http is not None:
            await self.http.stop()
        if self.store is not None:
            await self.store.close()
        if self._database_lock is not None:
            self._database_lock.release()
        self._stopped.set()

    async def wait_closed(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> "Bridge":
        await self.start()
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.stop()
