"""The contract between the core and a chat platform."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar

from pydantic import BaseModel

from bridge.events import ChatUser, Inbound, Outgoing
from bridge.http import HttpServer
from bridge.texts import Texts

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bridge.support_mode import SupportMode

# What the core gives an adapter: call it with every inbound event. It returns once the
# event is stored durably, so the adapter may acknowledge the platform after it (it raises
# otherwise: Unstorable, or any other error).
Sink = Callable[[Inbound], Awaitable[None]]


class DeliveryError(Exception):
    """The platform did not take a message.

    retry_after: seconds the platform asked us to wait (429). permanent: the customer can
    never be reached this way (bot blocked, user deactivated); nothing is retried.
    rejected: this one message can never be sent (the platform called it a bad request);
    it is dropped and logged, the customer stays reachable. Otherwise: retried later."""

    def __init__(self, reason: str, *, retry_after: float | None = None,
                 permanent: bool = False, rejected: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.permanent = permanent
        self.rejected = rejected


class EditTargetGone(Exception):
    """The message an edit was for no longer exists (the customer deleted it). The core
    then says the edit's text as a new message, or nothing when only buttons were to go."""


class Unstorable(Exception):
    """The sink could not store an event although the database answers: the event itself
    is at fault, and will likely fail the same way each time it is brought again. A
    platform that redelivers until stored may give up on it after a few tries, telling the
    customer plainly; any other error means "try again later"."""


class Adapter(ABC):
    #: the platform name; also the config section that enables the adapter
    name: ClassVar[str]
    #: the schema of that config section
    Settings: ClassVar[type[BaseModel]]
    #: True for a platform that shows each conversation as a thread (Slack): the core then
    #: fills Outgoing.thread, and the ref deliver() returns for the first message of a
    #: conversation without a thread becomes that conversation's thread.
    threads: ClassVar[bool] = False

    def threads_for(self, user: ChatUser) -> bool:
        """Whether this customer's conversations are shown as threads (see `threads`),
        for a platform where that depends on the chat."""
        return self.threads

    @property
    def receives_alone(self) -> bool:
        """True when only one daemon of a database may receive for this adapter (a
        Telegram bot polled with getUpdates: a second poller gets 409 Conflict). It then
        receives on one daemon only (bridge/shards.py: the holder of shard 0); any other
        adapter receives on every daemon, which stores what it gets for the customers of
        another for that one (bridge/forwarding.py)."""
        return False

    def share_limits(self, fraction: float) -> None:
        """Several daemons send for one bot: this one sends for `fraction` of its customers
        (0 to 1). A platform limit that holds for the whole bot, not per chat, is to be kept
        to that fraction here. Optional."""
        return None

    #: the customer-facing texts, for what an adapter says itself (use_texts)
    texts: Texts = Texts()

    def use_texts(self, texts: Texts) -> None:
        """The deployment's [texts], set by the Bridge before start()."""
        self.texts = texts

    def use_database(self, engine: AsyncEngine) -> None:
        """The bridge's database, for an adapter that keeps its own tables there (created
        by the bridge's migrations): Slack's installations in many workspaces. Optional."""
        return None

    def use_support_mode(self, support_mode: SupportMode) -> None:
        """Where an adapter embedded in a company's own bot or app keeps who is talking to
        the helpdesk rather than to the bot. The Bridge sets it before start(). Optional."""
        return None

    @abstractmethod
    async def start(self, sink: Sink, http: HttpServer) -> None:
        """Begin receiving; hand every inbound event to sink. http is the daemon's HTTP
        server, where an adapter may mount its webhook."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop receiving. Deliveries are the core's; it stops calling deliver first."""

    @abstractmethod
    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        """Show message to the user. Returns the platform's reference to what was sent (used
        to edit it later), or raises DeliveryError. An edit always has its edit_ref (the
        platform's reference to the message to change); empty text means "only take the
        buttons away". EditTargetGone when that message no longer exists."""

    async def awaiting_reply(self, user: ChatUser) -> None:
        """The helpdesk has the customer's message and SATE is answering: a platform may show
        a typing indicator until the next deliver() to this user. Optional."""
        return None

    def command_hint(self, name: str) -> str:
        """How a customer types the core's command `name` here (for the help text)."""
        return f"/{name}"

    async def check(self) -> tuple[bool, str]:
        """For `helpdesk-bridge check`: can this adapter reach its platform? Optional."""
        return True, f"{self.name}: nothing to check"
