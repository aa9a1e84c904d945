"""The daemons of a chaos run, as processes that can be killed, frozen and rolled.

With one daemon (SQLite, or PostgreSQL) it is the classic run: that daemon is killed and
started again. With several (PostgreSQL), they share the customers' shards out
(bridge/shards.py): a kill or a freeze of any of them is what can lose or double a message,
and how long the others take to hold every shard it held is measured from the leases
table."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from bridge.sandbox import DEFAULT_API_KEY
from bridge.shards import SHARDS
from bridge.store import Store


class DaemonProcess:
    """`helpdesk-bridge run`, its output appended to its own log."""

    def __init__(self, config: Path, index: int) -> None:
        self.config = config
        self.index = index
        self.log = config.parent / f"bridge-{index}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = open(self.log, "ab")  # what it said, for a post-mortem
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "--config", str(self.config),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, "CHAOS_KEY": DEFAULT_API_KEY})
        log.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(f"the bridge exited by itself ({self.process.returncode}):\n"
                               + self.log.read_text()[-2000:])
        self.process.send_signal(signum)

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except asyncio.TimeoutError:
                self.process.send_signal(signal.SIGUSR1)  # its tasks' stacks, in its log
                await asyncio.sleep(1)
                self.process.kill()
                raise RuntimeError("a daemon did not stop within 30 s of SIGTERM:\n"
                                   + self.log.read_text()[-12000:]) from None


class Fleet:
    def __init__(self, config_for: Callable[[int], Path], size: int, db: str) -> None:
        """config_for(index): the config file of the index-th daemon started (all may share
        one; in webhook mode each has its own port)."""
        self.daemons = [DaemonProcess(config_for(index), index) for index in range(size)]
        self._config_for = config_for
        self._spawned = size
        # moments a daemon was killed or frozen (what the protocol's windows are counted
        # around), and stopped (SIGTERM: a clean handover, no window)
        self.moments: dict[str, list[float]] = {"SIGKILL": [], "SIGSTOP": [], "SIGTERM": []}
        self.kills = 0
        # seconds from a kill, freeze or stop until others hold every shard the daemon held
        self.takeovers: list[float] = []
        self._store = Store.from_url(db) if db.startswith("postgresql") else None
        self._watches: list[asyncio.Task] = []
        self._frozen: set[DaemonProcess] = set()

    async def start(self) -> None:
        for daemon in self.daemons:
            await daemon.start()
            await asyncio.sleep(1)  # the first one takes the lease

    async def _holder_pids(self) -> dict[int, int]:
        """Shard -> the pid of the daemon holding it (PostgreSQL)."""
        return {shard: int(holder.split(":")[-2])
                for shard, holder in (await self._store.shard_holders()).items()}

    async def _with_shards(self) -> list[DaemonProcess]:
        """The daemons that work customers now (with one daemon: that one)."""
        if len(self.daemons) == 1:
            return self.daemons
        pids = set((await self._holder_pids()).values())
        return [d for d in self.daemons if d.pid in pids]

    def _watch_takeover(self, gone: int, since: float) -> None:
        if self._store is not None:
            self._watches.append(asyncio.create_task(self._takeover(gone, since)))

    async def _takeover(self, gone: int, since: float) -> None:
        while time.monotonic() - since < 120:
            holders = await self._holder_pids()
            if len(holders) == SHARDS and gone not in holders.values():
                self.takeovers.append(time.monotonic() - since)
                return
            await asyncio.sleep(0.02)

    async def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a daemon (with several, any of them) and start it again."""
        working = await self._with_shards()
        daemon = rng.choice([d for d in self.daemons if d not in self._frozen])
        daemon.signal(signal.SIGKILL)
        await daemon.process.wait()
        self.kills += 1
        if daemon in working:
            self.moments["SIGKILL"].append(time.monotonic())
            self._watch_takeover(daemon.pid, time.monotonic())
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        await daemon.start()

    async def freeze_working(self, seconds: float) -> None:
        """SIGSTOP a daemon that works customers, SIGCONT it after `seconds`: it must send
        nothing then, and exit (code 5) once it sees others took its shards over; it is
        started again."""
        daemon = (await self._with_shards() or self.daemons)[0]
        self._frozen.add(daemon)
        daemon.signal(signal.SIGSTOP)
        self.moments["SIGSTOP"].append(time.monotonic())
        self._watch_takeover(daemon.pid, time.monotonic())
        await asyncio.sleep(seconds)
        daemon.process.send_signal(signal.SIGCONT)
        try:
            code = await asyncio.wait_for(daemon.process.wait(), 60)
        except asyncio.TimeoutError:
            daemon.process.send_signal(signal.SIGUSR1)
            await asyncio.sleep(1)
            raise RuntimeError("a daemon frozen past its lease did not exit within 60 s of "
                               "waking:\n" + daemon.log.read_text()[-12000:]) from None
        if code != 5:
            raise RuntimeError(f"a daemon frozen past its lease exited with {code}, not 5:\n"
                               + daemon.log.read_text()[-2000:])
        self._frozen.discard(daemon)
        await daemon.start()

    async def roll(self) -> None:
        """A rolling restart: a new daemon started, then an old one stopped (SIGTERM), in
        turn for each."""
        for index, old in enumerate(list(self.daemons)):
            new = DaemonProcess(self._config_for(self._spawned), self._spawned)
            self._spawned += 1
            await new.start()
            await asyncio.sleep(1)
            self.moments["SIGTERM"].append(time.monotonic())
            if old in await self._with_shards():
                self._watch_takeover(old.pid, time.monotonic())
            await old.stop()
            self.daemons[index] = new

    async def stop(self) -> None:
        """Stop every daemon (none is left running when one fails to stop: it is killed,
        and the first such failure raised once all are down)."""
        failures = []
        for daemon in self.daemons:
            try:
                await daemon.stop()
            except RuntimeError as failure:
                failures.append(failure)
        for watch in self._watches:
            watch.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        if self._store is not None:
            await self._store.close()
        if failures:
            raise failures[0]

    def logs(self) -> list[Path]:
        return sorted(self.daemons[0].log.parent.glob("bridge-*.log"))
