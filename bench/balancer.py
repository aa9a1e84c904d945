"""A round-robin load balancer for the daemons' webhooks, as a deployment puts in front of
them: each request goes to the next daemon in turn, and to the one after it when that one
refuses the connection, fails, or does not answer within a few seconds (it is down, or
frozen). A daemon frozen while a request waited on it may still handle that request when
it wakes: the bridge must then not show the message twice."""
from __future__ import annotations

import asyncio
import itertools
from typing import Callable

import aiohttp
from aiohttp import web

from testing.local import serve

PATIENCE = 2.0  # seconds a daemon may take to answer before the next one is tried
ROUNDS = 3  # times each daemon is tried before the platform is told 502 (it retries)


class RoundRobin:
    def __init__(self, ports: Callable[[], list[int]]) -> None:
        """ports(): the daemons' ports as they are now (daemons come and go)."""
        self._ports = ports
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""
        self.retried = 0  # requests a daemon did not take, sent to the next one

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner, port = await serve(app)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PATIENCE))
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        ports = self._ports()
        first = next(self._turn)
        for attempt in range(ROUNDS * len(ports)):
            if attempt and attempt % len(ports) == 0:
                await asyncio.sleep(0.5)  # none took it: a moment, then each again
            port = ports[(first + attempt) % len(ports)]
            try:
                async with self._http.request(request.method,
                                              f"http://127.0.0.1:{port}{request.path_qs}",
                                              data=body, headers=headers) as answer:
                    if answer.status < 500:
                        return web.Response(status=answer.status, body=await answer.read())
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            self.retried += 1
        return web.Response(status=502, text="no daemon answered")

