"""`python -m bench.prune`: how long deleting a backlog of old finished rows takes, and what
the relay's own writes wait meanwhile (the prune shares SQLite's one writer with them).

    python -m bench.prune --rows 100000 [--db postgresql+asyncpg://postgres@127.0.0.1/test]

A backlog like this is what a bridge that ran for weeks before `keep_days` existed (or with
`keep_days = 0`) finds at its first prune: 100,000 rows each way is ~40 minutes at 40
messages/s. Every row is old and finished; a customer writes every 10 ms meanwhile.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

from sqlalchemy import insert

from bench.database import database, reset
from bridge.store import Store, upgrade
from bridge.store.models import ToCustomer, ToHelpdesk, utcnow

CHUNK = 5000  # rows per INSERT while filling


async def _fill(store: Store, customer_id: int, conversation_id: int, rows: int) -> None:
    long_ago = utcnow() - timedelta(days=30)
    for start in range(0, rows, CHUNK):
        count = min(CHUNK, rows - start)
        async with store.engine.begin() as connection:
            await connection.execute(insert(ToHelpdesk), [
                {"customer_id": customer_id, "conversation_id": conversation_id,
                 "kind": "message", "body": {"text": f"q{start + n}"},
                 "dedupe_key": f"up-{start + n}", "status": "done", "attempts": 1,
                 "created_at": long_ago, "done_at": long_ago} for n in range(count)])
            await connection.execute(insert(ToCustomer), [
                {"customer_id": customer_id, "conversation_id": conversation_id,
                 "body": {"text": f"a{start + n}"}, "dedupe_key": f"down-{start + n}",
                 "status": "delivered", "attempts": 1, "platform_ref": str(start + n),
                 "created_at": long_ago, "delivered_at": long_ago} for n in range(count)])


async def prune_backlog(url: str, rows: int) -> dict:
    store = Store.from_url(url)
    await upgrade(store.engine)
    customer = await store.customer_for("bench", "bench", "1", "1")
    conversation = await store.start_conversation(customer.id)
    await _fill(store, customer.id, conversation.id, rows)
    other = await store.customer_for("bench", "bench", "2", "2")

    waits: list[float] = []
    done = asyncio.Event()

    async def customer_writing() -> None:  # a write the relay does for every message
        n = 0
        while not done.is_set():
            started = time.perf_counter()
            await store.accept_message(other.id, {"text": "hi"}, f"live-{n}")
            waits.append((time.perf_counter() - started) * 1000)
            n += 1
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(customer_writing())
    started = time.perf_counter()
    up, down = await store.prune(utcnow() - timedelta(days=7))
    seconds = time.perf_counter() - started
    done.set()
    await writer
    await store.close()
    waits.sort()
    return {"rows": up + down, "seconds": seconds, "rows_per_s": (up + down) / seconds,
            "writes": len(waits), "p50": statistics.median(waits),
            "p99": waits[int(len(waits) * 0.99)], "max": waits[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="old rows each way")
    parser.add_argument("--db", default="", help="SQLAlchemy URL (emptied first)")
    args = parser.parse_args()
    backend = args.db.split(":")[0].split("+")[0] if args.db else "sqlite"
    if args.db:
        reset(args.db)
    with database(args.db) as url:
        row = asyncio.run(prune_backlog(url, args.rows))
    print(f"\nprune: {args.rows} old rows each way, {backend}; a customer's write every "
          f"10 ms meanwhile (ms)")
    print(f"{'deleted':>8} {'seconds':>8} {'rows/s':>8} {'writes':>7} {'write p50':>10} "
          f"{'write p99':>10} {'write max':>10}")
    print(f"{row['rows']:>8} {row['seconds']:>8.1f} {row['rows_per_s']:>8.0f} "
          f"{row['writes']:>7} {row['p50']:>10.1f} {row['p99']:>10.1f} {row['max']:>10.1f}")


if __name__ == "__main__":
    main()
