"""`python -m bench [--customers 1000 5000] [--connections 8] [--db URL]`: the scale bench.

Opens one conversation per simulated customer at the same instant against the sandbox
helpdesk (in this process, through the console adapter), then has the sandbox drop every
connection and times until every conversation room is joined again. Prints a table.
Relay speed through Telegram, the chaos suite and the soak of issue 6 are still to come.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from adapters.console import ConsoleAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.logs import setup_logging
from bridge.sandbox import DEFAULT_API_KEY, NAMESPACE, SandboxHelpdesk


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def scale(customers: int, connections: int, db_url: str) -> dict:
    sandbox = SandboxHelpdesk()
    await sandbox.start(port=0)
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "connections": connections,
                     "request_timeout": 60},
        "storage": {"url": db_url}, "http": {"listen": "127.0.0.1:0"}}, env={})
    console = ConsoleAdapter()
    try:
        async with Bridge(settings, [console]) as bridge:
            await bridge.relay.link.wait_connected(30)
            before = rss_mb()
            started = time.perf_counter()
            names = [f"c{n}" for n in range(customers)]
            await asyncio.gather(*(console.say(name, f"hello {name}") for name in names))
            await asyncio.gather(*(console.expect(name, "You said", timeout=600) for name in names))
            opened = time.perf_counter() - started
            after = rss_mb()
            connects_before = sandbox.connects
            started = time.perf_counter()
            await sandbox.drop_connections()
            rooms = sandbox.sio.manager.rooms
            while sum(1 for room in rooms.get(NAMESPACE, {}) if room and room.startswith("conv_")
                      ) < customers:
                await asyncio.sleep(0.005)
            rejoined = time.perf_counter() - started
            return {"customers": customers, "open_s": opened, "opens_per_s": customers / opened,
                    "rss_total_mb": after, "kb_per_customer": (after - before) * 1024 / customers,
                    "rejoin_s": rejoined, "reconnects": sandbox.connects - connects_before}
    finally:
        await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--customers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--db", default="", help="SQLAlchemy URL (default: a temporary SQLite)")
    args = parser.parse_args()
    setup_logging("ERROR")
    print(f"scale bench: {os.cpu_count()} cores, {args.connections} helpdesk connections, "
          f"{'SQLite' if not args.db else args.db.split(':')[0]}; sandbox and harness run in "
          "the same process, so RSS includes them")
    print(f"{'customers':>9} {'open s':>8} {'opens/s':>8} {'RSS MB':>7} {'KB/cust':>8} "
          f"{'rejoin s':>9} {'reconnects':>10}")
    for count in args.customers:
        with tempfile.TemporaryDirectory() as folder:
            url = args.db or f"sqlite+aiosqlite:///{folder}/bench.db"
            row = asyncio.run(scale(count, args.connections, url))
        print(f"{row['customers']:>9} {row['open_s']:>8.2f} {row['opens_per_s']:>8.1f} "
              f"{row['rss_total_mb']:>7.0f} {row['kb_per_customer']:>8.1f} "
              f"{row['rejoin_s']:>9.2f} {row['reconnects']:>10}", flush=True)


if __name__ == "__main__":
    main()
