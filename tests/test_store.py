"""The Store's own promises, on SQLite and PostgreSQL: what a caller reads is what was
last written, cached or not."""
import asyncio

import pytest

from bridge.store import ToCustomer
from bridge.store.customer_cache import CustomerCache
from bridge.store.models import Customer
from tests.conftest import queue_rows


async def test_a_customer_read_after_a_change_sees_the_change(store):
    ann = await store.customer_for("telegram", "bot", "1", "100", "en")
    assert (await store.customer(ann.id)).language == "en"  # now cached
    await store.set_customer(ann.id, language="de", unreachable=True)
    again = await store.customer(ann.id)
    assert (again.language, again.unreachable) == ("de", True)
    # a new chat id (the user wrote from elsewhere) is stored and seen at once
    moved = await store.customer_for("telegram", "bot", "1", "200", "de")
    assert (moved.id, moved.chat_id) == (ann.id, "200")
    assert (await store.customer(ann.id)).chat_id == "200"


async def test_a_change_to_a_column_that_does_not_exist_is_refused_and_writes_nothing(store):
    """Column names are written into the statement, so only the model's own are taken."""
    ann = await store.customer_for("telegram", "bot", "1", "100", "en")
    with pytest.raises(ValueError, match="no column"):
        await store.set_customer(ann.id, language="de", **{"id = 0; --": 1})
    assert (await store.customer(ann.id)).language == "en"
    store._customers.changed(ann.id)  # read from the database, not the cache
    assert (await store.customer(ann.id)).language == "en"


async def test_the_active_conversation_is_never_read_stale(store):
    ann = await store.customer_for("telegram", "bot", "1", "100")
    await store.customer(ann.id)  # cached with no active conversation
    row = await store.accept_message(ann.id, {"text": "hi"}, "m1")
    assert (await store.customer(ann.id)).active_conversation_id == row.conversation_id
    second = await store.start_conversation(ann.id)
    assert (await store.customer(ann.id)).active_conversation_id == second.id


async def test_reads_racing_writes_end_on_the_written_row(store):
    ann = await store.customer_for("telegram", "bot", "1", "100", "en")

    async def reader() -> None:
        for _ in range(20):
            await store.customer(ann.id)

    async def writer() -> None:
        for n in range(20):
            await store.set_customer(ann.id, language=f"l{n}")

    await asyncio.gather(reader(), reader(), writer())
    assert (await store.customer(ann.id)).language == "l19"


def test_a_row_read_before_a_change_is_not_kept():
    cache = CustomerCache()
    row = Customer(id=7, platform="telegram", account="bot", user_id="1", chat_id="1",
                   session_id="s")
    read_started = cache.generation
    cache.changed(7)  # a write committed while the read was in flight
    cache.put(row, read_started)
    assert cache.get(7) is None
    cache.put(row, cache.generation)
    assert cache.get(7) is row and cache.id_of("telegram", "bot", "1") == 7


def test_the_cache_stays_within_its_size():
    cache = CustomerCache(size=3)
    for n in range(10):
        cache.put(Customer(id=n, platform="p", account="a", user_id=str(n), chat_id="c",
                           session_id=f"s{n}"), cache.generation)
    assert [cache.get(n) is not None for n in range(10)] == [False] * 7 + [True] * 3
    assert cache.id_of("p", "a", "0") is None and cache.id_of("p", "a", "9") == 9


async def test_a_refused_write_leaves_nothing_half_done_and_nothing_locked(store):
    """A duplicate is refused after the transaction has already started a new conversation:
    all of it is rolled back, and no pooled connection is left holding a transaction (on
    SQLite that would hold the one write lock, and every later write would wait)."""
    ann = await store.customer_for("telegram", "bot", "1", "100")
    first = await store.accept_message(ann.id, {"text": "hi"}, "m1")
    await store.set_conversation(first.conversation_id, state="closed")
    assert await store.accept_message(ann.id, {"text": "hi"}, "m1") is None  # a duplicate
    assert (await store.customer(ann.id)).active_conversation_id == first.conversation_id
    assert [c.id for c in await store.open_conversations(ann.id)] == []

    async def write(n: int) -> None:
        await store.enqueue_to_customer(ann.id, first.conversation_id, {"text": f"a{n}"})
        await store.next_to_customer(ann.id)

    await asyncio.wait_for(asyncio.gather(*(write(n) for n in range(20))), 10)
    assert len(await queue_rows(store, ToCustomer, ann.id)) == 20


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: a file
async def test_postgres_connections_cut_while_idle_are_replaced_unseen(store, database_url):
    """A database restart (or a firewall dropping idle connections) while the pool is idle:
    the next store calls get new connections instead of an error (asyncpg's pool sees the
    closed sockets), however recently the cut connections were used."""
    from sqlalchemy.engine import make_url

    from tests.conftest import _admin

    cut = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
           f"WHERE datname = '{make_url(database_url).database}' AND pid <> pg_backend_pid()")
    ann = await store.customer_for("telegram", "bot", "1", "100")
    first = await store.accept_message(ann.id, {"text": "hi"}, None)
    for _ in range(2):
        await _admin(cut)
        await asyncio.sleep(0.2)
        assert (await store.conversation(first.conversation_id)).id == first.conversation_id
        assert await store.next_to_customer(ann.id) is None  # no error: replaced unseen
        assert (await store.next_to_helpdesk(ann.id))[0].id == first.id


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_url_parameters_reach_every_connection(database_url):
    """The guide's `?ssl=...` (an asyncpg argument in the URL) holds for the hot path's own
    pool too: read as the engine reads it, not as a server setting the server refuses."""
    from sqlalchemy.engine import make_url

    from bridge.store import Store, upgrade

    url = make_url(database_url).update_query_dict({"ssl": "disable"})
    store = Store.from_url(url.render_as_string(hide_password=False))
    try:
        await upgrade(store.engine)
        ann = await store.customer_for("telegram", "bot", "1", "100")
        queued = await store.accept_message(ann.id, {"text": "hi"}, "m1")
        waiting, _conversation = await store.next_to_helpdesk(ann.id)
        assert (waiting.id, waiting.body) == (queued.id, {"text": "hi"})
    finally:
        await store.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_held_by_another_process_neither_blocks_the_bridge_nor_loses_a_write(
        store, database_url):
    """One-statement reads and writes run in the event loop (bridge/store/driver.py). While
    another program holds SQLite's write lock, a write must wait off the
    loop and then land; reads go on meanwhile."""
    import sqlite3

    from sqlalchemy.engine import make_url

    ann = await store.customer_for("telegram", "bot", "1", "100")
    first = await store.accept_message(ann.id, {"text": "hi"}, "m1")
    other = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    write = asyncio.create_task(
        store.enqueue_to_customer(ann.id, first.conversation_id, {"text": "reply"}, "r1"))
    for _ in range(20):
        await asyncio.sleep(0.01)
        assert (await store.next_to_helpdesk(ann.id))[0].id == first.id  # reads go on
    assert not write.done()
    other.execute("COMMIT")
    other.close()
    queued = await asyncio.wait_for(write, 10)
    assert (await store.next_to_customer(ann.id)).id == queued.id
    assert await store.enqueue_to_customer(ann.id, first.conversation_id, {"text": "reply"},
                                           "r1") is None  # and it is there only once


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_log_is_written_back_as_writes_go_on(store, database_url):
    """The loop's own writer never checkpoints (that fsyncs): a thread does, so the
    write-ahead log stays a few MB however long the daemon runs."""
    import os

    from sqlalchemy.engine import make_url

    from bridge.store.driver import SqliteDriver

    wal = make_url(database_url).database + "-wal"
    ann = await store.customer_for("telegram", "bot", "1", "100")
    first = await store.accept_message(ann.id, {"text": "hi"}, "m1")
    sizes = []
    for round_ in range(6):
        for n in range(SqliteDriver.CHECKPOINT_EVERY):
            await store.enqueue_to_customer(ann.id, first.conversation_id, {"text": "x" * 200},
                                            f"r{round_}-{n}")
        checkpoint = store._db._checkpoint  # running on its thread: let it finish
        if checkpoint is not None:
            await checkpoint
        sizes.append(os.path.getsize(wal))
    assert sizes[-1] <= 2 * sizes[1], sizes  # without checkpoints: six times the first


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_daemons_share_the_shards_and_one_that_lost_a_shard_acts_for_none_of_its_customers(
        store, database_url):
    """Daemons on one PostgreSQL share the customers' shards out evenly and never hold one
    together. Once another daemon took a shard over (a new epoch), the first one's claims
    for its customers come back empty and its finishes change nothing, checked in the same
    statement, and its own clock refuses to send. A lease expires when its holder stops
    renewing it, or at once when the holder's session is gone (it died)."""
    from bridge.shards import SHARDS, Shards, shard_of
    from bridge.store import Store
    from bridge.store.queries import LeaseLost

    ann = await store.customer_for("telegram", "bot", "1", "100")
    first = await store.accept_message(ann.id, {"text": "hi"}, "m1")
    reply = await store.enqueue_to_customer(ann.id, first.conversation_id, {"text": "r"}, "r1")
    shard = shard_of(ann.id)
    await store.forward({"kind": "command", "user": {}, "name": "start"}, shard)
    [(forwarded, _event, _shard)] = await store.oldest_forwarded([shard], 10)
    others = [Store.from_url(database_url) for _ in range(2)]
    a, b, c = (Shards(s, 2, "same config") for s in (store, *others))
    for daemon, its_store in zip((a, b, c), (store, *others)):
        its_store.fence(daemon)
    try:
        await a.join()
        assert sorted(a.held) == list(range(SHARDS))  # alone: every shard
        a.check(shard)
        assert (await store.next_to_customer(ann.id)).id == reply.id  # its own: claims work
        await b.join()
        assert not b.held  # all held by a live daemon
        await a.balance()  # a sees b, and lets half go
        await b.balance()
        assert len(a.held) == len(b.held) == SHARDS // 2
        assert set(a.held).isdisjoint(b.held)
        if shard not in a.held:  # ann's shard is a's for what follows
            a, b = b, a
            store, others[0] = others[0], store

        await asyncio.sleep(2.1)  # a froze past its leases (it renews nothing)
        with pytest.raises(LeaseLost):
            a.check(shard)
        await b._renew()
        await b.balance()  # a is no longer live: b takes every shard
        assert sorted(b.held) == list(range(SHARDS))
        assert await store.next_to_customer(ann.id) is None
        assert await store.next_to_helpdesk(ann.id) is None
        with pytest.raises(LeaseLost):
            await store.finish_to_customer(reply, "delivered", "ref-a")
        with pytest.raises(LeaseLost):
            await store.finish_to_helpdesk(first, "done", opened=(first.conversation_id, "t1"))
        with pytest.raises(LeaseLost):
            await store.finish_forwarded(forwarded, shard)
        assert [row[0] for row in await others[0].oldest_forwarded([shard], 10)] == [forwarded]
        assert (await others[0].next_to_customer(ann.id)).id == reply.id  # still queued
        assert (await others[0].next_to_helpdesk(ann.id))[0].id == first.id
        assert (await others[0].conversation(first.conversation_id)).ticket_chat_id is None
        await a._renew()  # a wakes: its shards were taken, so it is done for
        assert a.lost and not a.owns(ann.id)

        await c.join()
        assert not c.held
        b._connection.terminate()  # b dies: its session ends, its lock with it
        await asyncio.sleep(0.3)  # the server sees the socket close
        with pytest.raises(LeaseLost):
            b.check(shard)
        await c.balance()  # at once, long before b's leases would run out
        assert sorted(c.held) == list(range(SHARDS))
        await others[1].finish_to_customer(reply, "delivered", "ref-c")
        assert (await others[1].delivered(reply.id))[0] == "ref-c"
    finally:
        for daemon in (a, b, c):
            await daemon.close()
        for other in others:
            await other.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_new_daemon_gets_its_share_at_once(store, database_url, monkeypatch):
    """A starting daemon's presence is NOTIFYed: the others let its share go at once, and a
    stopping daemon's release wakes the others, not their next tick (made half a minute
    long here)."""
    from bridge.shards import SHARDS, Shards
    from bridge.store import Store

    other = Store.from_url(database_url)
    first, second = Shards(store, 10, "same"), Shards(other, 10, "same")
    runs = []
    try:
        await first.join()
        first.tick = second.tick = 30
        runs.append(asyncio.create_task(first.run()))
        await second.join()  # wakes the first, which lets half go and says so
        runs.append(asyncio.create_task(second.run()))
        for _ in range(100):
            if len(second.held) == SHARDS // 2:
                break
            await asyncio.sleep(0.05)
        assert len(first.held) == len(second.held) == SHARDS // 2
        runs[0].cancel()
        await first.close()
        for _ in range(100):
            if len(second.held) == SHARDS:
                break
            await asyncio.sleep(0.05)
        assert len(second.held) == SHARDS
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await second.close()
        await first.close()
        await other.close()


async def test_forwarded_events_come_back_as_they_were_received_oldest_first(store):
    """What one daemon stores for another is what that one handles, in order, shard by
    shard."""
    from bridge.events import (
        ButtonPress,
        ChatUser,
        Command,
        InboundMessage,
        inbound_from_json,
        inbound_to_json,
    )

    ann = ChatUser("telegram", "bot", "1", "100", "de")
    events = [InboundMessage(ann, "Grüße <b>", "m1", attachment={"url": "https://x/y",
                                                                "name": "a.pdf"}),
              ButtonPress(ann, "rate:4:5", text="great"), Command(ann, "close")]
    for event in events:
        await store.forward(inbound_to_json(event), 3)
    await store.forward(inbound_to_json(Command(ann, "start")), 4)
    stored = await store.oldest_forwarded([3], 10)
    assert [inbound_from_json(data) for _id, data, _shard in stored] == events
    await store.finish_forwarded(stored[0][0], 3)
    assert [row[0] for row in await store.oldest_forwarded([3], 10)] == \
        [row[0] for row in stored[1:]]
    assert [shard for _id, _data, shard in await store.oldest_forwarded([2, 4], 10)] == [4]
