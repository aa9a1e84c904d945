"""Tables. The migrations in migrations/versions must produce exactly these (a test checks)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def seconds_since(moment: datetime) -> float:
    """Seconds since a stored time (SQLite hands times back without their zone: UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (utcnow() - moment).total_seconds())


class Base(DeclarativeBase):
    pass


class Customer(Base):
    """One chat user of one bot/workspace. session_id is what the helpdesk sees: opaque."""
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("platform", "account", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    chat_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str | None] = mapped_column(String(16))
    # Not a foreign key: conversations already point here, and a cycle buys nothing.
    active_conversation_id: Mapped[int | None] = mapped_column(Integer)
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by an operator (helpdesk-bridge customers block): nothing they write is relayed.
    blocked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_awaiting_comment", "rated_at",
                            postgresql_where=text("prompt = 'comment'"),
                            sqlite_where=text("prompt = 'comment'")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    ticket_chat_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    number: Mapped[int] = mapped_column(Integer)  # "Conversation 2" for the customer
    state: Mapped[str] = mapped_column(String(16), default="opening")  # opening|open|closed|failed
    handler: Mapped[str] = mapped_column(String(16), default="sate")  # sate|agent
    agent_name: Mapped[str | None] = mapped_column(String(128))
    prompt: Mapped[str | None] = mapped_column(String(16))  # close_confirm|rating|comment
    prompt_ref: Mapped[str | None] = mapped_column(String(128))  # platform message to edit
    rating: Mapped[int | None] = mapped_column(Integer)
    # When it was rated: the rating waits for its comment until rated_at + comment_wait.
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where the platform shows it, on platforms with threads (a Slack thread's ts).
    thread_ref: Mapped[str | None] = mapped_column(String(128))
    # Its latest voice call (bridge/calls.py): its key, and live | closed | sate_left.
    call_key: Mapped[str | None] = mapped_column(String(16))
    call_state: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class QueueRow:
    """What a row of either queue holds: one customer's, about one of their conversations
    (or none), kept until the far end took it. status starts "queued"; see each queue."""
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    body: Mapped[dict] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ToHelpdesk(QueueRow, Base):
    """A customer's message or request, kept until the helpdesk has acknowledged it.
    status: queued | done | failed."""
    __tablename__ = "to_helpdesk"

    kind: Mapped[str] = mapped_column(String(24))  # message|close|review|call|close_call
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ToCustomer(QueueRow, Base):
    """Something to show a customer, kept until the platform has accepted it. status:
    queued | delivered | failed (the platform refused it) | rejected (it could not be
    rendered)."""
    __tablename__ = "to_customer"

    platform_ref: Mapped[str | None] = mapped_column(String(128))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Lease(Base):
    """A lease: one daemon (holder) may work what it covers until expires_at, renewing it
    as it goes. epoch grows with every new holder: the fencing token the queues' claims and
    finishes check. fingerprint: the holder's helpdesk and bot configuration, which every
    daemon of a database must share."""
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fingerprint: Mapped[str] = mapped_column(String(64))


class Forwarded(Base):
    """An event (from a platform, bridge/events.py, or from the helpdesk, bridge/protocol.py;
    as JSON) that a daemon received for a customer another daemon works: stored here, with
    the customer's shard, until the holder of that shard has handled it
    (bridge/forwarding.py)."""
    __tablename__ = "forwarded"
    __table_args__ = (Index("forwarded_shard", "shard", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    shard: Mapped[int] = mapped_column(Integer, server_default="0")


class InSupportMode(Base):
    """A chat user of an adapter embedded in a company's own bot or app who is talking to
    the helpdesk, not to the bot (bridge/support_mode.py)."""
    __tablename__ = "support_mode"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RevokedFile(Base):
    """A file link of a forgotten customer (a path the bridge serves, bridge/http.py): no
    longer served, though its signature would still be valid."""
    __tablename__ = "revoked_files"

    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
