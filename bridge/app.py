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
from bridge.config import Settings, load_settings, read_config_file
from bridge.helpdesk import HelpdeskLink
from bridge.http import HttpServer
from bridge.logs import add_secrets
from bridge.registry import adapter_schemas, build_adapters
from bridge.relay import Relay
from bridge.retention import Pruner
from bridge.single_daemon import DatabaseLock
from bridge.store import Store, upgrade
from bridge.texts import Texts

log = logging.getLogger(__name__)


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
        self._closed = asyncio.Event()
        # Registered before anything can log: the key travels in the helpdesk URL.
        add_secrets(settings.secrets())

    @classmethod
    def from_config_file(cls, path: str | Path, adapters: list[Adapter] | None = None) -> "Bridge":
        return cls(load_config(path), adapters)

    async def start(self) -> None:
        settings = self.settings
        url = settings.storage.url.get_secret_value()
        self._database_lock = DatabaseLock.for_url(url)
        if self._database_lock is not None:
            self._database_lock.acquire()  # AnotherDaemon: this one must not start
        self.store = Store.from_url(url)
        await upgrade(self.store.engine)
        helpdesk = settings.helpdesk
        link_factory = partial(HelpdeskLink, helpdesk.url, helpdesk.api_key.get_secret_value(),
                               namespace=helpdesk.namespace, connections=helpdesk.connections,
                               request_timeout=helpdesk.request_timeout)
        # Links the bridge signs must outlive a restart (the helpdesk may fetch a customer's
        # file hours later), so the key is derived from a configured secret.
        signing_key = hmac.new(helpdesk.api_key.get_secret_value().encode(),
                               b"helpdesk-bridge signed links", hashlib.sha256).digest()
        self.http = HttpServer(settings.http.listen, settings.http.public_url, signing_key)
        await self.http.start()
        self.relay = Relay(self.store, link_factory, self.adapters, self.http,
                           Texts(settings.texts, settings.default_language),
                           public_url=settings.http.public_url,
                           calls=bool(settings.calls.livekit_url))
        ops.mount(self.http, self.relay)
        if settings.calls.livekit_url:
            CallPage(self.http, settings.calls.livekit_url, settings.calls.sdk,
                     self.relay.end_call, self.relay.call_state).mount()
        await self.relay.start()
        if settings.storage.keep_days:
            self.pruner = Pruner(self.store, settings.storage.keep_days, self.relay.metrics)
            self.pruner.start()
        log.info("helpdesk-bridge started with adapters: %s",
                 ", ".join(a.name for a in self.adapters) or "none")

    async def stop(self) -> None:
        if self.pruner is not None:
            await self.pruner.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.http is not None:
            await self.http.stop()
        if self.store is not None:
            await self.store.close()
        if self._database_lock is not None:
            self._database_lock.release()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> "Bridge":
        await self.start()
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.stop()
