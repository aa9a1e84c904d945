"""The one module that runs queries. Rows come back detached and read-only by convention:
change them through a Store method, so every write is one short transaction."""
from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Optional

from sqlalchemy import String, bindparam, cast, delete, event, func, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bridge.store.customer_cache import CustomerCache
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
        # The hot path's one-query reads. On PostgreSQL without a transaction around them:
        # BEGIN and ROLLBACK were two of a read's three round trips. (SQLite opens none
        # for a read anyway, and changing the setting would cost it two thread trips.)
        self._read = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        ) if engine.dialect.name == "postgresql" else self._session
        # SQLite runs one writer at a time, and a writer that finds another one busy waits
        # in SQLite's busy handler, which sleeps in steps of up to 100 ms: one write took
        # over a second with 20 customers at once. Queueing writers here instead is fair
        # and costs microseconds; reads still run in parallel (WAL). PostgreSQL needs none.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._customers = CustomerCache()

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
        await self.engine.dispose()

    def connections_open(self) -> int:
        """Connections the pool holds right now (in use or idle)."""
        pool = self.engine.pool
        return pool.checkedout() + (pool.checkedin() if hasattr(pool, "checkedin") else 0)

    async def ping(self) -> None:
        async with self._session() as session:
            await session.execute(select(1))

    # --- customers ---------------------------------------------------------------

    async def customer_for(self, platform: str, account: str, user_id: str, chat_id: str,
                           language: str | None = None) -> Customer:
        """The customer row for a chat user, created on first contact."""
        generation = self._customers.generation
        known = self._customers.id_of(platform, account, user_id)
        found = self._customers.get(known) if known is not None else None
        query = select(Customer).where(Customer.platform == platform,
                                       Customer.account == account, Customer.user_id == user_id)
        if found is None:
            async with self._session() as session:
                found = (await session.execute(query)).scalar_one_or_none()
            if found is not None:
                self._customers.put(found, generation)
        if found is not None:
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
                return (await session.execute(query)).scalar_one()

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
        async with self._read() as session:
            return (await session.execute(_BY_TICKET, {"ticket": ticket_chat_id})
                    ).scalar_one_or_none()

    async def open_conversations(self, customer_id: int) -> list[Conversation]:
        query = (select(Conversation)
                 .where(Conversation.customer_id == customer_id,
                        Conversation.state.in_(OPEN_STATES))
                 .order_by(Conversation.id))
        async with self._session() as session:
            return list((await session.execute(query)).scalars())

    async def awaiting_comment(self, customer_id: int) -> Conversation | None:
        """The conversation whose rating waits for its optional comment, if any."""
        async with self._read() as session:
            return (await session.execute(_AWAITING_COMMENT, {"customer": customer_id})
                    ).scalar_one_or_none()

    async def move_to_new_conversation(self, row: ToHelpdesk) -> Conversation:
        """A queued message whose conversation closed meanwhile starts a new one."""
        async with self._write(changes_customer=row.customer_id) as session:
            conversation = await self._start_conversation(session, row.customer_id)
            await session.execute(update(ToHelpdesk).where(ToHelpdesk.id == row.id)
                                  .values(conversation_id=conversation.id))
            return conversation

    async def set_conversation(self, conversation_id: int, **fields: Any) -> None:
        async with self._write() as session:
            await session.execute(update(Conversation)
                                  .where(Conversation.id == conversation_id).values(**fields))

    async def start_conversation(self, customer_id: int) -> Conversation:
        """A new conversation row (state "opening"), made the customer's active one."""
        async with self._write(changes_customer=customer_id) as session:
            return await self._start_conversation(session, customer_id)

    async def _start_conversation(self, session, customer_id: int,
                                  thread_ref: str | None = None) -> Conversation:
        highest = (await session.execute(select(func.max(Conversation.number))
                                         .where(Conversation.customer_id == customer_id))).scalar()
        conversation = Conversation(customer_id=customer_id, number=(highest or 0) + 1,
                                    state="opening", handler="sate", thread_ref=thread_ref,
                                    created_at=utcnow())
        session.add(conversation)
        await session.flush()
        await session.execute(update(Customer).where(Customer.id == customer_id)
                              .values(active_conversation_id=conversation.id))
        return conversation

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
        starts_or_switches = False  # the customer's active conversation changes
        try:
            async with self._write() as session:
                if may_be_comment:
                    awaiting = (await session.execute(
                        _AWAITING_COMMENT, {"customer": customer_id})).scalar_one_or_none()
                    if awaiting is not None:
                        return awaiting
                if thread is not None:
                    target = (await session.execute(
                        select(Conversation).where(Conversation.customer_id == customer_id,
                                                   Conversation.thread_ref == thread)
                        .order_by(Conversation.id.desc()).limit(1))).scalar_one_or_none()
                else:
                    target = (await session.execute(
                        _ACTIVE_CONVERSATION, {"customer": customer_id})).scalar_one_or_none()
                if target is None or target.state not in OPEN_STATES:
                    starts_or_switches = True
                    target = await self._start_conversation(session, customer_id,
                                                            thread_ref=thread or ref)
                elif thread is not None:  # writing in a thread makes it the active one
                    starts_or_switches = True
                    await session.execute(update(Customer).where(Customer.id == customer_id)
                                          .values(active_conversation_id=target.id))
                row = ToHelpdesk(customer_id=customer_id, conversation_id=target.id,
                                 kind="message", body=body, dedupe_key=dedupe_key,
                                 status="queued", attempts=0, created_at=utcnow())
                session.add(row)
            return row
        except IntegrityError:
            return None
        finally:
            if starts_or_switches:
                self._customers.changed(customer_id)

    async def enqueue_request(self, customer_id: int, conversation_id: int, kind: str,
                              body: dict, dedupe_key: str | None = None) -> ToHelpdesk | None:
        try:
            async with self._write() as session:
                row = ToHelpdesk(customer_id=customer_id, conversation_id=conversation_id,
                                 kind=kind, body=body, dedupe_key=dedupe_key, status="queued",
                                 attempts=0, created_at=utcnow())
                session.add(row)
            return row
        except IntegrityError:
            return None

    async def next_to_helpdesk(self, customer_id: int) -> NextRequest | None:
        """The customer's oldest queued request, with its conversation as it is now."""
        async with self._read() as session:
            return await _next_to_helpdesk(session, customer_id)

    async def finish_to_helpdesk(self, row: ToHelpdesk, status: str, error: str | None = None,
                                 opened: tuple[int, str] | None = None) -> NextRequest | None:
        """Mark a request done or failed, and return the customer's next one: the two in
        one round trip, as a drain does them one after the other.

        opened: (conversation id, ticket_chat_id) of the conversation the request opened,
        recorded in the same transaction: a crash leaves the conversation without its id
        and the message queued, or both done, never the id known and the message queued."""
        async with self._write() as session:
            if opened is not None:
                conversation_id, ticket_chat_id = opened
                await session.execute(update(Conversation)
                                      .where(Conversation.id == conversation_id)
                                      .values(ticket_chat_id=ticket_chat_id, state="open"))
            await session.execute(_FINISH_TO_HELPDESK, {"row": row.id, "status": status,
                                                         "error": error, "at": utcnow()})
            return await _next_to_helpdesk(session, row.customer_id)

    async def count_attempt(self, row_id: int) -> None:
        async with self._write() as session:
            await session.execute(update(ToHelpdesk).where(ToHelpdesk.id == row_id)
                                  .values(attempts=ToHelpdesk.attempts + 1))

    # --- helpdesk -> customer ----------------------------------------------------

    async def enqueue_to_customer(self, customer_id: int, conversation_id: int | None,
                                  body: dict, dedupe_key: str | None = None) -> ToCustomer | None:
        """Queue something to show; None if dedupe_key was seen before (shown once)."""
        try:
            async with self._write() as session:
                row = ToCustomer(customer_id=customer_id, conversation_id=conversation_id,
                                 body=body, dedupe_key=dedupe_key, status="queued", attempts=0,
                                 created_at=utcnow())
                session.add(row)
            return row
        except IntegrityError:
            return None

    async def next_to_customer(self, customer_id: int) -> ToCustomer | None:
        async with self._read() as session:
            return (await session.execute(_NEXT_TO_CUSTOMER, {"customer": customer_id})
                    ).scalar_one_or_none()

    async def finish_to_customer(self, row: ToCustomer, status: str,
                                 platform_ref: str | None = None) -> ToCustomer | None:
        """Mark a row delivered or failed, and return the customer's next one (one round
        trip for both)."""
        async with self._write() as session:
            await session.execute(_FINISH_TO_CUSTOMER, {"row": row.id, "status": status,
                                                         "ref": platform_ref, "at": utcnow()})
            return (await session.execute(_NEXT_TO_CUSTOMER, {"customer": row.customer_id})
                    ).scalar_one_or_none()

    async def delivered(self, row_id: int) -> tuple[str | None, dict | None]:
        """What became of a delivered row: the platform's ref to it, and what it said."""
        async with self._session() as session:
            row = await session.get(ToCustomer, row_id)
            return (row.platform_ref, row.body) if row else (None, None)

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

    async def to_customer_rows(self, customer_id: int) -> list[ToCustomer]:
        query = select(ToCustomer).where(ToCustomer.customer_id == customer_id).order_by(ToCustomer.id)
        async with self._session() as session:
            return list((await session.execute(query)).scalars())

    async def to_helpdesk_rows(self, customer_id: int) -> list[ToHelpdesk]:
        query = select(ToHelpdesk).where(ToHelpdesk.customer_id == customer_id).order_by(ToHelpdesk.id)
        async with self._session() as session:
            return list((await session.execute(query)).scalars())


# --- the hot path's statements ----------------------------------------------------------
# Built once, with their values bound at execution: building a select() costs about as much
# as running it (~0.2 ms), and these run several times for every message relayed.

_AWAITING_COMMENT = (select(Conversation)
                     .where(Conversation.customer_id == bindparam("customer"),
                            Conversation.prompt == "comment")
                     .order_by(Conversation.id.desc()).limit(1))
_ACTIVE_CONVERSATION = (select(Conversation)
                        .join(Customer, Customer.active_conversation_id == Conversation.id)
                        .where(Customer.id == bindparam("customer")))
_BY_TICKET = select(Conversation).where(Conversation.ticket_chat_id == bindparam("ticket"))
_NEXT_TO_CUSTOMER = (select(ToCustomer)
                     .where(ToCustomer.customer_id == bindparam("customer"),
                            ToCustomer.status == "queued")
                     .order_by(ToCustomer.id).limit(1))
_NEXT_TO_HELPDESK = (select(ToHelpdesk, Conversation)
                     .outerjoin(Conversation, Conversation.id == ToHelpdesk.conversation_id)
                     .where(ToHelpdesk.customer_id == bindparam("customer"),
                            ToHelpdesk.status == "queued")
                     .order_by(ToHelpdesk.id).limit(1))
_FINISH_TO_HELPDESK = (update(ToHelpdesk).where(ToHelpdesk.id == bindparam("row"))
                       .values(status=bindparam("status"), error=bindparam("error"),
                               done_at=bindparam("at")))
_FINISH_TO_CUSTOMER = (update(ToCustomer).where(ToCustomer.id == bindparam("row"))
                       .values(status=bindparam("status"), platform_ref=bindparam("ref"),
                               delivered_at=bindparam("at"), attempts=ToCustomer.attempts + 1))


async def _next_to_helpdesk(session: AsyncSession, customer_id: int) -> NextRequest | None:
    found = (await session.execute(_NEXT_TO_HELPDESK, {"customer": customer_id})).first()
    return (found[0], found[1]) if found is not None else None
