"""The one module that runs queries. Rows come back detached and read-only by convention:
change them through a Store method, so every write is one short transaction."""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence

from sqlalchemy import String, bindparam, cast, delete, event, func, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bridge.store.customer_cache import CustomerCache
from bridge.store.direct import (
    CONVERSATION,
    TO_CUSTOMER,
    TO_HELPDESK,
    Duplicate,
    Transaction,
    columns,
    driver_for,
    model,
)
from bridge.store.models import Conversation, Customer, ToCustomer, ToHelpdesk, utcnow

OPEN_STATES = ("opening", "open")
PING_AFTER_IDLE = 5.0  # seconds; see _ping_when_idle
NextRequest = tuple[ToHelpdesk, Optional[Conversation]]  # a queued request and its conversation


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _rollback_only_if_open(engine)

        @event.listens_for(engine.sync_engine, "first_connect")
        def _sqlite_wal(dbapi_connection, _record) -> None:
            # WAL: readers don't block the writer. It is a property of the database file,
            # so it is set once; setting it on every new connection takes a lock each time
            # and made concurrent connections wait in SQLite's busy handler (~50 ms).
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # synchronous=NORMAL is still durable against a killed process (only a power
            # cut can lose the last commits).
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_async_engine(url)
    _ping_when_idle(engine)
    return engine


def _rollback_only_if_open(engine: AsyncEngine) -> None:
    """A session rolls back when it closes, and the pool again when it takes the connection
    back, transaction or not: with aiosqlite each is a trip to its thread (two of the six
    trips of a one-query read, one of the five of a one-row insert). sqlite3 itself skips
    a rollback when no transaction is open; asking it first (a flag, no trip) skips the
    trip too."""
    dialect = engine.sync_engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection) -> None:
        driver = dbapi_connection.driver_connection  # None once invalidated: let it fail
        if driver is None or driver.in_transaction:
            rollback(dbapi_connection)

    dialect.do_rollback = do_rollback


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Test a pooled connection before use only if it has been idle a while: a database
    restarted meanwhile (or a firewall that dropped the idle connection) then costs a new
    connection, not a failed operation. SQLAlchemy's pool_pre_ping tests every checkout:
    a round trip per session, ~40% of a PostgreSQL read on the hot path. A connection in
    use in the last seconds is not tested; if the database restarted in that moment, the
    one operation that meets it fails (its caller retries it, or says it failed)."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _taken(dbapi_connection, record, _proxy) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned > PING_AFTER_IDLE:
            try:
                dialect.do_ping(dbapi_connection)
            except Exception as error:  # the pool replaces it and checks out another
                raise DisconnectionError() from error


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        # One-query reads of a customer or a conversation, frequent (the hot path's own
        # statements go to self._direct). On PostgreSQL without a transaction around them:
        # BEGIN and ROLLBACK were two of a read's three round trips. (SQLite opens none
        # for a read anyway, and changing the setting would cost it two thread trips.)
        self._read = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        ) if engine.dialect.name == "postgresql" else self._session
        # SQLite runs one writer at a time, and a writer that finds another one busy waits
        # in SQLite's busy handler, which sleeps in steps of up to 100 ms: one write took
        # over a second with 20 customers at once. Queueing writers here instead is fair
        # and costs microseconds; reads still run in parallel (WAL). PostgreSQL needs none.
        # The direct statements' writer queues on the same lock.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._customers = CustomerCache()
        self._direct = driver_for(engine, self._write_lock)

    @asynccontextmanager
    async def _write(self, changes_customer: int | None = None) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on exit, rolled back on an exception. A
        transaction that changes a customer row names it, so the cached row is dropped."""
        try:
            if self._write_lock is None:
                async with self._session.begin() as session:
                    yield session
                return
            async with self._write_lock, self._session.begin() as session:
                yield session
        finally:
            if changes_customer is not None:
                self._customers.changed(changes_customer)

    @classmethod
    def from_url(cls, url: str) -> "Store":
        return cls(make_engine(url))

    async def close(self) -> None:
        await self._direct.close()
        await self.engine.dispose()

    def connections_open(self) -> int:
        """Connections the pool holds right now (in use or idle)."""
        pool = self.engine.pool
        engine = pool.checkedout() + (pool.checkedin() if hasattr(pool, "checkedin") else 0)
        return engine + self._direct.connections()

    async def ping(self) -> None:
        async with self._session() as session:
            await session.execute(select(1))

    # --- customers ---------------------------------------------------------------

    async def customer_for(self, platform: str, account: str, user_id: str, chat_id: str,
                           language: str | None = None, moves_chat: bool = True) -> Customer:
        """The customer row for a chat user, created on first contact. moves_chat: chat_id
        is where the customer now writes (not so for a button press, whose chat is the
        message's and cannot be trusted to be theirs)."""
        generation = self._customers.generation
        known = self._customers.id_of(platform, account, user_id)
        found = self._customers.get(known) if known is not None else None
        who = {"platform": platform, "account": account, "user": user_id}
        if found is None:
            async with self._session() as session:
                found = (await session.execute(_CUSTOMER, who)).scalar_one_or_none()
            if found is not None:
                self._customers.put(found, generation)
        if found is not None:
            if not moves_chat:
                chat_id = found.chat_id
            if found.chat_id != chat_id or (language and found.language != language):
                await self.set_customer(found.id, chat_id=chat_id,
                                        language=language or found.language)
                return await self.customer(found.id)
            return found
        try:
            async with self._write() as session:
                customer = Customer(platform=platform, account=account, user_id=user_id,
                                    chat_id=chat_id, language=language, unreachable=False,
                                    session_id=secrets.token_hex(16), created_at=utcnow())
                session.add(customer)
            return customer
        except IntegrityError:  # created by a concurrent first message
            async with self._session() as session:
                return (await session.execute(_CUSTOMER, who)).scalar_one()

    async def customer(self, customer_id: int) -> Customer | None:
        cached = self._customers.get(customer_id)
        if cached is not None:
            return cached
        generation = self._customers.generation
        async with self._read() as session:
            row = await session.get(Customer, customer_id)
        if row is not None:
            self._customers.put(row, generation)
        return row

    async def set_customer(self, customer_id: int, **fields: Any) -> None:
        async with self._write(changes_customer=customer_id) as session:
            await session.execute(update(Customer).where(Customer.id == customer_id).values(**fields))

    async def open_conversation_rooms(self) -> list[tuple[str, str | None]]:
        """(session_id, ticket_chat_id) of every conversation opening or open."""
        query = (select(Customer.session_id, Conversation.ticket_chat_id)
                 .join(Conversation, Conversation.customer_id == Customer.id)
                 .where(Conversation.state.in_(OPEN_STATES)))
        async with self._session() as session:
            return [tuple(row) for row in await session.execute(query)]

    # --- conversations -----------------------------------------------------------

    async def conversation(self, conversation_id: int) -> Conversation | None:
        async with self._read() as session:
            return await session.get(Conversation, conversation_id)

    async def conversation_by_ticket(self, ticket_chat_id: str) -> Conversation | None:
        found = await self._direct.read(_BY_TICKET, ticket_chat_id)
        return self._conversation(found)

    async def open_conversations(self, customer_id: int) -> list[Conversation]:
        query = (select(Conversation)
                 .where(Conversation.customer_id == customer_id,
                        Conversation.state.in_(OPEN_STATES))
                 .order_by(Conversation.id))
        async with self._session() as session:
            return list((await session.execute(query)).scalars())

    async def awaiting_comment(self, customer_id: int) -> Conversation | None:
        """The conversation whose rating waits for its optional comment, if any."""
        return self._conversation(await self._direct.read(_AWAITING_COMMENT, customer_id))

    async def move_to_new_conversation(self, row: ToHelpdesk) -> Conversation:
        """A queued message whose conversation closed meanwhile starts a new one."""
        try:
            async with self._direct.transaction() as transaction:
                conversation = await self._start_conversation(transaction, row.customer_id)
                await transaction.run(_MOVE_TO_HELPDESK, conversation.id, row.id)
                return conversation
        finally:
            self._customers.changed(row.customer_id)

    async def set_conversation(self, conversation_id: int, **fields: Any) -> None:
        async with self._write() as session:
            await session.execute(update(Conversation)
                                  .where(Conversation.id == conversation_id).values(**fields))

    async def start_conversation(self, customer_id: int) -> Conversation:
        """A new conversation row (state "opening"), made the customer's active one."""
        try:
            async with self._direct.transaction() as transaction:
                return await self._start_conversation(transaction, customer_id)
        finally:
            self._customers.changed(customer_id)

    async def _start_conversation(self, transaction: Transaction, customer_id: int,
                                  thread_ref: str | None = None) -> Conversation:
        highest = (await transaction.row(_HIGHEST_NUMBER, customer_id))[0]
        number, created_at = (highest or 0) + 1, utcnow()
        new_id = (await transaction.row(_INSERT_CONVERSATION, customer_id, number, thread_ref,
                                        self._direct.from_time(created_at)))[0]
        await transaction.run(_SET_ACTIVE, new_id, customer_id)
        return Conversation(id=new_id, customer_id=customer_id, ticket_chat_id=None,
                            number=number, state="opening", handler="sate", agent_name=None,
                            prompt=None, prompt_ref=None, rating=None, thread_ref=thread_ref,
                            created_at=created_at, closed_at=None)

    # --- customer -> helpdesk ----------------------------------------------------

    async def accept_message(self, customer_id: int, body: dict, dedupe_key: str | None,
                             thread: str | None = None, ref: str | None = None,
                             may_be_comment: bool = False) -> ToHelpdesk | Conversation | None:
        """Queue a customer message: in the conversation of the thread it was written in,
        else in their active conversation; a new conversation (threaded at `thread`, or
        under the message itself) when that one is closed or there is none. One
        transaction, so a crash leaves either both or neither. None: a duplicate.

        may_be_comment: if a rating waits for its optional comment, nothing is queued and
        that conversation comes back instead (the text is its comment). Asked here, in the
        same round trip, because it is asked of every message and is almost always no."""
        if thread is None:
            try:
                queued = await self._queue_in_active_conversation(
                    customer_id, body, dedupe_key, may_be_comment)
            except Duplicate:
                return None
            if queued is not None:
                return queued
        starts_or_switches = False  # the customer's active conversation changes
        try:
            async with self._direct.transaction() as transaction:
                if may_be_comment:
                    awaiting = await transaction.row(_AWAITING_COMMENT, customer_id)
                    if awaiting is not None:
                        return self._conversation(awaiting)
                if thread is not None:
                    found = await transaction.row(_THREAD_CONVERSATION, customer_id, thread)
                else:
                    found = await transaction.row(_ACTIVE_CONVERSATION, customer_id)
                target = self._conversation(found)
                if target is None or target.state not in OPEN_STATES:
                    starts_or_switches = True
                    target = await self._start_conversation(transaction, customer_id,
                                                            thread_ref=thread or ref)
                elif thread is not None:  # writing in a thread makes it the active one
                    starts_or_switches = True
                    await transaction.run(_SET_ACTIVE, target.id, customer_id)
                return await self._insert_to_helpdesk(transaction.row, customer_id, target.id,
                                                      "message", body, dedupe_key)
        except Duplicate:
            return None
        finally:
            if starts_or_switches:
                self._customers.changed(customer_id)

    async def _queue_in_active_conversation(self, customer_id: int, body: dict,
                                            dedupe_key: str | None,
                                            may_be_comment: bool) -> ToHelpdesk | None:
        """The usual case in one statement, committed by itself: the active conversation is
        open and no rating waits for a comment. None when it is not so (the transaction in
        accept_message sorts that out). One statement where the transaction takes five:
        round trips on PostgreSQL, SQLite's one writer held for each of them."""
        created_at = utcnow()
        queued = await self._direct.write(
            _QUEUE_UNLESS_COMMENT if may_be_comment else _QUEUE_IN_ACTIVE,
            json.dumps(body), dedupe_key, self._direct.from_time(created_at), customer_id)
        if queued is None:
            return None
        new_id, conversation_id = queued
        return ToHelpdesk(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          kind="message", body=body, dedupe_key=dedupe_key, status="queued",
                          attempts=0, error=None, created_at=created_at, done_at=None)

    async def enqueue_request(self, customer_id: int, conversation_id: int, kind: str,
                              body: dict, dedupe_key: str | None = None) -> ToHelpdesk | None:
        try:
            return await self._insert_to_helpdesk(self._direct.write, customer_id,
                                                  conversation_id, kind, body, dedupe_key)
        except Duplicate:
            return None

    async def _insert_to_helpdesk(self, run: Callable[..., Awaitable[Sequence[Any] | None]],
                                  customer_id: int, conversation_id: int | None, kind: str,
                                  body: dict, dedupe_key: str | None) -> ToHelpdesk:
        """run: a transaction's statement, or the driver's own (committed by itself)."""
        created_at = utcnow()
        new_id = (await run(_INSERT_TO_HELPDESK, customer_id, conversation_id, kind,
                                        json.dumps(body), dedupe_key,
                                        self._direct.from_time(created_at)))[0]
        return ToHelpdesk(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          kind=kind, body=body, dedupe_key=dedupe_key, status="queued",
                          attempts=0, error=None, created_at=created_at, done_at=None)

    async def next_to_helpdesk(self, customer_id: int) -> NextRequest | None:
        """The customer's oldest queued request, with its conversation as it is now."""
        return self._next_request(await self._direct.read(_NEXT_TO_HELPDESK, customer_id))

    async def finish_to_helpdesk(self, row: ToHelpdesk, status: str, error: str | None = None,
                                 opened: tuple[int, str] | None = None) -> NextRequest | None:
        """Mark a request done or failed, and return the customer's next one (a drain
        does them one after the other).

        opened: (conversation id, ticket_chat_id) of the conversation the request opened,
        recorded in the same transaction: a crash leaves the conversation without its id
        and the message queued, or both done, never the id known and the message queued."""
        finished = (status, error, self._direct.from_time(utcnow()), row.id)
        if opened is None:
            await self._direct.write(_FINISH_TO_HELPDESK, *finished)
        else:
            async with self._direct.transaction() as transaction:
                conversation_id, ticket_chat_id = opened
                await transaction.run(_OPENED, ticket_chat_id, conversation_id)
                await transaction.run(_FINISH_TO_HELPDESK, *finished)
        return await self.next_to_helpdesk(row.customer_id)

    async def count_attempt(self, row_id: int) -> None:
        async with self._write() as session:
            await session.execute(update(ToHelpdesk).where(ToHelpdesk.id == row_id)
                                  .values(attempts=ToHelpdesk.attempts + 1))

    # --- helpdesk -> customer ----------------------------------------------------

    async def enqueue_to_customer(self, customer_id: int, conversation_id: int | None,
                                  body: dict, dedupe_key: str | None = None) -> ToCustomer | None:
        """Queue something to show; None if dedupe_key was seen before (shown once)."""
        created_at = utcnow()
        try:
            new_id = (await self._direct.write(
                _INSERT_TO_CUSTOMER, customer_id, conversation_id, json.dumps(body),
                dedupe_key, self._direct.from_time(created_at)))[0]
        except Duplicate:
            return None
        return ToCustomer(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          body=body, dedupe_key=dedupe_key, status="queued", attempts=0,
                          platform_ref=None, error=None, created_at=created_at,
                          delivered_at=None)

    async def next_to_customer(self, customer_id: int) -> ToCustomer | None:
        return self._to_customer(await self._direct.read(_NEXT_TO_CUSTOMER, customer_id))

    async def finish_to_customer(self, row: ToCustomer, status: str,
                                 platform_ref: str | None = None,
                                 error: str | None = None) -> ToCustomer | None:
        """Mark a row delivered, failed or rejected (error: why), and return the customer's
        next one."""
        await self._direct.write(_FINISH_TO_CUSTOMER, status, platform_ref, error,
                                 self._direct.from_time(utcnow()), row.id)
        return await self.next_to_customer(row.customer_id)

    async def replace_body(self, row_id: int, body: dict) -> None:
        """Keep less of a row than was sent (a call invite's token, once delivered)."""
        await self._direct.write(_REPLACE_BODY, json.dumps(body), row_id)

    async def delivered(self, row_id: int) -> tuple[str | None, dict | None]:
        """What became of a delivered row: the platform's ref to it, and what it said."""
        async with self._session() as session:
            row = await session.get(ToCustomer, row_id)
            return (row.platform_ref, row.body) if row else (None, None)

    # --- rows of the direct statements, as models ----------------------------------

    def _conversation(self, found: Sequence[Any] | None) -> Conversation | None:
        return model(Conversation, CONVERSATION, found, self._direct) if found else None

    def _to_customer(self, found: Sequence[Any] | None) -> ToCustomer | None:
        return model(ToCustomer, TO_CUSTOMER, found, self._direct) if found else None

    def _next_request(self, found: Sequence[Any] | None) -> NextRequest | None:
        if found is None:
            return None
        split = len(TO_HELPDESK)
        conversation = found[split:] if found[split] is not None else None
        return (model(ToHelpdesk, TO_HELPDESK, found[:split], self._direct),
                self._conversation(conversation))

    # --- retention ---------------------------------------------------------------

    async def prune(self, finished_before: datetime, batch: int = 1000) -> tuple[int, int]:
        """Delete queue rows finished (done, delivered, failed) before a moment: (to the
        helpdesk, to customers) deleted. In batches, each its own short transaction, so a
        backlog of millions never holds SQLite's one writer for long. Kept whatever its
        age: a row still queued, and a message whose buttons a conversation still waits on
        (its prompt_ref: the edit that settles the prompt needs the message)."""
        awaited = (select(Conversation.prompt_ref)
                   .where(Conversation.prompt.is_not(None), Conversation.prompt_ref.is_not(None)))
        old_requests = (select(ToHelpdesk.id)
                        .where(ToHelpdesk.status != "queued", ToHelpdesk.done_at < finished_before)
                        .order_by(ToHelpdesk.id).limit(batch))
        old_messages = (select(ToCustomer.id)
                        .where(ToCustomer.status != "queued",
                               ToCustomer.delivered_at < finished_before,
                               cast(ToCustomer.id, String).not_in(awaited))
                        .order_by(ToCustomer.id).limit(batch))
        counts = []
        for table, old in ((ToHelpdesk, old_requests), (ToCustomer, old_messages)):
            total = 0
            while True:
                async with self._write() as session:
                    deleted = (await session.execute(
                        delete(table).where(table.id.in_(old)))).rowcount
                total += deleted
                if deleted < batch:
                    break
                await asyncio.sleep(0)  # let the relay's own writes in between batches
            counts.append(total)
        return counts[0], counts[1]

    async def stats(self) -> dict:
        """For the metrics: rows waiting and the oldest one's time, per direction; customers;
        conversations open."""
        result = {}
        async with self._session() as session:
            for direction, table in (("to_helpdesk", ToHelpdesk), ("to_customer", ToCustomer)):
                count, oldest = (await session.execute(
                    select(func.count(), func.min(table.created_at))
                    .where(table.status == "queued"))).one()
                result[direction] = (count, oldest)
            result["customers"] = (await session.execute(
                select(func.count()).select_from(Customer))).scalar()
            result["open_conversations"] = (await session.execute(
                select(func.count()).select_from(Conversation)
                .where(Conversation.state.in_(OPEN_STATES)))).scalar()
        return result

    async def customers_with_work(self) -> tuple[list[int], list[int]]:
        """Customers with queued rows: (to the helpdesk, to the customer). For restarts."""
        async with self._session() as session:
            up = await session.execute(select(ToHelpdesk.customer_id)
                                       .where(ToHelpdesk.status == "queued").distinct())
            down = await session.execute(select(ToCustomer.customer_id)
                                         .where(ToCustomer.status == "queued").distinct())
            return list(up.scalars()), list(down.scalars())



# Built once (building a select() costs about as much as running it): every message asks.
_CUSTOMER = select(Customer).where(Customer.platform == bindparam("platform"),
                                   Customer.account == bindparam("account"),
                                   Customer.user_id == bindparam("user"))

# --- the hot path's statements ----------------------------------------------------------
# On the driver itself (bridge/store/direct.py), `?` for values; both databases read them.

_CONVERSATION = f"SELECT {columns(CONVERSATION)} FROM conversations"
_BY_TICKET = f"{_CONVERSATION} WHERE ticket_chat_id = ?"
_AWAITING_COMMENT = (f"{_CONVERSATION} WHERE customer_id = ? AND prompt = 'comment' "
                     "ORDER BY id DESC LIMIT 1")
_THREAD_CONVERSATION = (f"{_CONVERSATION} WHERE customer_id = ? AND thread_ref = ? "
                        "ORDER BY id DESC LIMIT 1")
_ACTIVE_CONVERSATION = (f"SELECT {columns(CONVERSATION, 'c')} FROM conversations c "
                        "JOIN customers u ON u.active_conversation_id = c.id WHERE u.id = ?")
_HIGHEST_NUMBER = "SELECT max(number) FROM conversations WHERE customer_id = ?"
_INSERT_CONVERSATION = ("INSERT INTO conversations (customer_id, number, state, handler, "
                        "thread_ref, created_at) VALUES (?, ?, 'opening', 'sate', ?, ?) "
                        "RETURNING id")
_SET_ACTIVE = "UPDATE customers SET active_conversation_id = ? WHERE id = ?"
_OPENED = "UPDATE conversations SET ticket_chat_id = ?, state = 'open' WHERE id = ?"

_INSERT_TO_HELPDESK = ("INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, "
                       "dedupe_key, status, attempts, created_at) "
                       "VALUES (?, ?, ?, ?, ?, 'queued', 0, ?) RETURNING id")
_QUEUE_IN_OPEN = ("INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, "
                  "dedupe_key, status, attempts, created_at) "
                  "SELECT u.id, c.id, 'message', ?, ?, 'queued', 0, ? FROM customers u "
                  "JOIN conversations c ON c.id = u.active_conversation_id "
                  f"WHERE u.id = ? AND c.state IN {tuple(OPEN_STATES)!r}")
_NO_COMMENT_AWAITED = (" AND NOT EXISTS (SELECT 1 FROM conversations w "
                       "WHERE w.customer_id = u.id AND w.prompt = 'comment')")
_QUEUE_IN_ACTIVE = f"{_QUEUE_IN_OPEN} RETURNING id, conversation_id"
_QUEUE_UNLESS_COMMENT = f"{_QUEUE_IN_OPEN}{_NO_COMMENT_AWAITED} RETURNING id, conversation_id"
_MOVE_TO_HELPDESK = "UPDATE to_helpdesk SET conversation_id = ? WHERE id = ?"
_NEXT_TO_HELPDESK = (f"SELECT {columns(TO_HELPDESK, 't')}, {columns(CONVERSATION, 'c')} "
                     "FROM to_helpdesk t LEFT JOIN conversations c ON c.id = t.conversation_id "
                     "WHERE t.customer_id = ? AND t.status = 'queued' ORDER BY t.id LIMIT 1")
_FINISH_TO_HELPDESK = "UPDATE to_helpdesk SET status = ?, error = ?, done_at = ? WHERE id = ?"

_INSERT_TO_CUSTOMER = ("INSERT INTO to_customer (customer_id, conversation_id, body, "
                       "dedupe_key, status, attempts, created_at) "
                       "VALUES (?, ?, ?, ?, 'queued', 0, ?) RETURNING id")
_NEXT_TO_CUSTOMER = (f"SELECT {columns(TO_CUSTOMER)} FROM to_customer "
                     "WHERE customer_id = ? AND status = 'queued' ORDER BY id LIMIT 1")
_REPLACE_BODY = "UPDATE to_customer SET body = ? WHERE id = ?"
_FINISH_TO_CUSTOMER = ("UPDATE to_customer SET status = ?, platform_ref = ?, error = ?, "
                       "delivered_at = ?, attempts = attempts + 1 WHERE id = ?")
