"""`python -m bench.soak --minutes N [--db URL] [--rate 10]`

A daemon runs for months; this runs one (a real `helpdesk-bridge run` process, Telegram
adapter, long polling) under a steady two-way load for N minutes: customers arrive, write
a few messages (each answered by SATE: `--rate` messages a second each way), say it is
resolved, confirm, rate, skip the comment and leave, and come back later with a new
question (`--population` distinct customers, in turn). With only new customers the
bridge's bounded caches (customer rows, per-chat pacing: 10,000 each) would still be
filling after 30 minutes and look like growth; a population that has come round once by
the end of the warm-up shows what grows beyond them. Every 5 s it
reads the daemon's /metrics: resident memory, open file descriptors, asyncio tasks,
database connections. After a warm-up (the first quarter) it fits a line through each and
prints the slope per hour, and over the second half alone: a leak shows as a slope that
does not fade, a cache filling up to its bound as one that does.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiolimiter import AsyncLimiter

from bench.chaos import write_config
from bench.database import reset
from bench.fleet import DaemonProcess
from bridge.sandbox import SandboxHelpdesk
from testing.fake_telegram import FakeTelegram
from testing.local import free_port

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SAMPLED = {"rss_mb": "process_resident_memory_bytes", "open_fds": "process_open_fds",
           "tasks": "bridge_asyncio_tasks", "db_connections": "bridge_db_connections"}
PAUSE = 2.0  # seconds a customer waits after an answer before writing again



def _buttons(message: dict) -> list[dict]:
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


class Customers:
    def __init__(self, telegram: FakeTelegram, rng: random.Random, rate: float,
                 population: int) -> None:
        self.telegram, self.rng = telegram, rng
        self.pace = AsyncLimiter(rate, 1)  # customer messages a second, at most
        self.population = population
        self.visits = 0
        self.messages = self.conversations = self.stuck = 0

    async def wait_text(self, chat: int, needle: str, timeout: float = 60) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # every needle is unique within one customer's life (numbered questions, one
            # conversation), so the first match is the one
            found = next((m for m in self.telegram.sent_to(chat)
                          if needle in m.get("text", "")), None)
            if found:
                return found
            await asyncio.sleep(0.1)
        self.stuck += 1
        return None

    async def one_customer(self) -> None:
        # customers come back: each in turn, so all have been seen once warm-up is over
        chat = 40_000 + self.visits % self.population
        self.visits += 1
        for n in range(self.rng.randint(3, 8)):
            await self.pace.acquire()
            self.telegram.say(chat, f"question {n} from {chat}")
            self.messages += 1
            if await self.wait_text(chat, f'"question {n} from {chat}"') is None:
                return
            await asyncio.sleep(PAUSE)
        self.telegram.say(chat, "it is resolved, thanks")
        for prompt_text, choice in (("Did this solve", 0), ("How would you rate", 4),
                                    ("add a comment", 0)):
            prompt = await self.wait_text(chat, prompt_text)
            if prompt is None:
                return
            self.telegram.press(chat, prompt, _buttons(prompt)[choice]["callback_data"])
        if await self.wait_text(chat, "Thanks for your feedback") is not None:
            self.conversations += 1
        self.telegram.sent.pop(chat, None)  # the harness forgets them too

    async def keep_coming(self, concurrent: int, until: float) -> None:
        async def slot() -> None:
            while time.monotonic() < until:
                await self.one_customer()
        await asyncio.gather(*(slot() for _ in range(concurrent)))


async def sample(metrics_url: str) -> dict[str, float] | None:
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url, timeout=aiohttp.ClientTimeout(total=5)) as answer:
                text = await answer.text()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for key, metric in SAMPLED.items():
            if name == metric:
                values[key] = float(value) / (2**20 if key == "rss_mb" else 1)
    return values if len(values) == len(SAMPLED) else None


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return statistics.linear_regression(xs, ys).slope * 3600


async def soak(minutes: float, rate: float, db: str, seed: int, population: int) -> dict:
    sandbox, telegram = SandboxHelpdesk(), FakeTelegram(TOKEN)
    await sandbox.start(port=0)
    await telegram.start()
    port = free_port()
    samples: list[tuple[float, dict]] = []
    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), sandbox.url, telegram.url, db, lease_seconds=10)
        config.write_text(config.read_text().replace('listen = "127.0.0.1:0"',
                                                     f'listen = "127.0.0.1:{port}"'))
        bridge = DaemonProcess(config, 0)
        await bridge.start()
        customers = Customers(telegram, random.Random(seed), rate, population)
        started = time.monotonic()
        until = started + minutes * 60
        # A customer's life (3-8 messages, each answer + PAUSE, then closing and rating)
        # averages under 0.4 messages a second: three customers per message a second are
        # more than enough, and the limiter holds the rate.
        load = asyncio.create_task(customers.keep_coming(max(1, round(rate * 3)), until))
        try:
            while time.monotonic() < until:
                values = await sample(f"http://127.0.0.1:{port}/metrics")
                if values:
                    samples.append((time.monotonic() - started, values))
                await asyncio.sleep(5)
            await load
        finally:
            load.cancel()
            await bridge.stop()
            await telegram.stop()
            await sandbox.stop()
    elapsed = time.monotonic() - started
    warm = [(t, v) for t, v in samples if t >= elapsed / 4]
    late = [(t, v) for t, v in samples if t >= elapsed / 2]
    return {"minutes": elapsed / 60, "messages": customers.messages,
            "conversations": customers.conversations, "stuck": customers.stuck,
            "rows": {key: (warm[0][1][key] if warm else 0, warm[-1][1][key] if warm else 0,
                           slope_per_hour([(t, v[key]) for t, v in warm]),
                           slope_per_hour([(t, v[key]) for t, v in late]))
                     for key in SAMPLED},
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=10, help="customer messages a second")
    parser.add_argument("--db", default="", help="SQLAlchemy URL (default: a temporary SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--population", type=int, default=500,
                        help="distinct customers, who come back in turn")
    parser.add_argument("--samples", default="", help="write every sample to this CSV file")
    args = parser.parse_args()
    if args.db:
        reset(args.db)
    result = asyncio.run(soak(args.minutes, args.rate, args.db, args.seed, args.population))
    backend = args.db.split(":")[0].split("+")[0] if args.db else "sqlite"
    print(f"soak: {result['minutes']:.1f} min, {backend}, {result['messages']} customer "
          f"messages ({result['messages'] / result['minutes'] / 60:.1f}/s, + as many answers), {result['conversations']} conversations closed and "
          f"rated, {result['stuck']} waits that timed out")
    # A leak keeps its slope; a cache filling to its bound flattens: compare the two.
    print(f"{'after warm-up':<16} {'first':>9} {'last':>9} {'slope/hour':>11} "
          f"{'2nd half/hour':>14}")
    for key, (first, last, slope, late_slope) in result["rows"].items():
        print(f"{key:<16} {first:>9.1f} {last:>9.1f} {slope:>+11.2f} {late_slope:>+14.2f}")
    if args.samples:
        with open(args.samples, "w") as out:
            out.write("seconds," + ",".join(SAMPLED) + "\n")
            for at, values in result["samples"]:
                out.write(f"{at:.0f}," + ",".join(f"{values[k]:.2f}" for k in SAMPLED) + "\n")


if __name__ == "__main__":
    main()
