"""What the bridge holds about a person, for the operator who is asked for it (GDPR
articles 15 and 17): found by how the platform knows them, listed, shown, exported, erased
(forget), blocked and unblocked. `helpdesk-bridge customers` (bridge/cli.py) calls these,
and so can a program that embeds the bridge. docs/customers.md.

A change (forget, block, unblock) is carried out by the daemon working the customer, under
their lock, when one runs (bridge/relay.py, carry_out): it holds their rows in memory and
may be working their queues. The CLI stores the request for it (bridge/forwarding.py) and
waits; with no daemon running, the CLI carries it out itself.

A person is named PLATFORM:ID, as an operator knows them: `telegram:123456789` (the user
id), or with the bot or workspace in front when one bridge serves several:
`slack:T0123:U0456`.
"""
from __future__ import annotations

from typing import Any

from bridge.store import Store
from bridge.store.models import Customer, utcnow

CHANGES = ("forget", "block", "unblock")
HELPDESK_COPY = ("The helpdesk keeps its own copy of these conversations, under the "
                 "session id above: ask for it there, or erase it there.")


class UnknownCustomer(ValueError):
    """No customer, or more than one, goes by that name (the message says which)."""


def ref_of(customer: Customer) -> str:
    """The name that finds this customer and no other."""
    return f"{customer.platform}:{customer.account}:{customer.user_id}"


def parse_ref(ref: str) -> tuple[str, str | None, str]:
    """PLATFORM:ID or PLATFORM:ACCOUNT:ID -> (platform, account or None, user id)."""
    platform, _, rest = ref.partition(":")
    account, _, user_id = rest.rpartition(":")
    if not platform or not user_id:
        raise UnknownCustomer(f"{ref!r}: name a customer as PLATFORM:ID, e.g. "
                              "telegram:123456789 or slack:T0123:U0456")
    return platform, account or None, user_id


class CustomerData:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, ref: str) -> Customer:
        platform, account, user_id = parse_ref(ref)
        found = await self.store.customers_named(platform, user_id, account)
        if not found:
            raise UnknownCustomer(f"no customer {ref}")
        if len(found) > 1:
            raise UnknownCustomer(f"{ref} names {len(found)} customers, of different bots or "
                                  "workspaces: " + ", ".join(ref_of(c) for c in found))
        return found[0]

    async def list(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """One line's worth per customer, oldest first."""
        return [{"customer": ref_of(customer), "since": customer.created_at,
                 "conversations": count, "open": open_now, "latest": latest}
                for customer, count, open_now, latest
                in await self.store.customer_summaries(limit, offset)]

    async def show(self, ref: str) -> dict[str, Any]:
        """The customer and their conversations, without the messages (export has those)."""
        customer = await self.find(ref)
        rows = await self.store.rows_of_customer(customer)
        return {"customer": ref_of(customer), "session_id": customer.session_id,
                "language": customer.language, "since": customer.created_at.isoformat(),
                "in_support_mode": bool(rows["support_mode"]),
                "conversations": [
                    {key: conversation[key] for key in (
                        "number", "state", "handler", "agent_name", "rating", "created_at",
                        "closed_at")}
                    for conversation in rows["conversations"]],
                "queued": {direction: sum(1 for row in rows[direction]
                                          if row["status"] == "queued")
                           for direction in ("to_helpdesk", "to_customer")}}

    async def export(self, ref: str) -> dict[str, Any]:
        """Everything the bridge holds about the person, row by row, as JSON values: their
        messages and what they were shown included."""
        customer = await self.find(ref)
        return {"customer": ref_of(customer), "session_id": customer.session_id,
                "exported_at": utcnow().isoformat(), "helpdesk": HELPDESK_COPY,
                "rows": await self.store.rows_of_customer(customer)}

    async def carry_out(self, change: str, customer: Customer) -> str:
        """Make a change (one of CHANGES) now: what was done, said for the operator. Only
        where nothing else acts for the customer meanwhile (see the module's text)."""
        if change == "forget":
            await self.store.erase_customer(customer)
        elif change == "block":
            if customer.blocked_at is None:
                await self.store.set_customer(customer.id, blocked_at=utcnow())
        elif change == "unblock":
            await self.store.set_customer(customer.id, blocked_at=None)
        else:
            raise ValueError(f"no such change: {change}")
        return done(change, customer)


def done(change: str, customer: Customer) -> str:
    """What a change did, for the operator."""
    ref = ref_of(customer)
    if change == "forget":
        return (f"forgot {ref}: every row about them is erased, and the files they sent are "
                "no longer served. The helpdesk keeps its own copy of their conversations "
                f"(session id {customer.session_id}): erase it there too. If they write "
                "again, they start afresh.")
    if change == "block":
        return (f"blocked {ref}: nothing they write is relayed, and they are told so once. "
                "Conversations open on the helpdesk stay open there.")
    return f"unblocked {ref}: what they write is relayed again."
