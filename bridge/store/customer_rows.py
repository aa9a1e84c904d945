"""Customers: one row per chat user of one bot or workspace, created on first contact."""
from __future__ import annotations

import secrets
from typing import Any

from bridge.store.driver import Duplicate, column_list, model
from bridge.store.models import Customer, utcnow
from bridge.store.queries import CUSTOMER, Queries

SELECT_CUSTOMER = f"SELECT {column_list(CUSTOMER)} FROM customers"
_BY_ID = f"{SELECT_CUSTOMER} WHERE id = ?"
BY_USER = f"{SELECT_CUSTOMER} WHERE platform = ? AND account = ? AND user_id = ?"
_INSERT = ("INSERT INTO customers (platform, account, user_id, chat_id, session_id, language, "
           "unreachable, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id")


class CustomerRows(Queries):
    async def customer_for(self, platform: str, account: str, user_id: str, chat_id: str,
                           language: str | None = None, moves_chat: bool = True) -> Customer:
        """The customer row for a chat user, created on first contact. moves_chat: chat_id
        is where the customer now writes (not so for a button press, whose chat is the
        message's and cannot be trusted to be theirs)."""
        generation = self._customers.generation
        known = self._customers.id_of(platform, account, user_id)
        found = self._customers.get(known) if known is not None else None
        if found is None:
            found = self._customer(await self._db.read(BY_USER, platform, account, user_id))
            if found is not None:
                self._customers.put(found, generation)
        if found is None:
            try:
                return await self._insert_customer(platform, account, user_id, chat_id,
                                                   language)
            except Duplicate:  # created by a concurrent first message
                return self._customer(await self._db.read(BY_USER, platform, account,
                                                          user_id))
        if not moves_chat:
            chat_id = found.chat_id
        if found.chat_id != chat_id or (language and found.language != language):
            await self.set_customer(found.id, chat_id=chat_id,
                                    language=language or found.language)
            return await self.customer(found.id)
        return found

    async def customer_id_for(self, platform: str, account: str, user_id: str, chat_id: str,
                              language: str | None = None) -> int:
        """The id of a chat user's customer row, created on first contact, and nothing
        else changed: any daemon may ask, while only the one holding the customer's shard
        changes the row (bridge/shards.py)."""
        known = self._customers.id_of(platform, account, user_id)
        if known is not None:
            return known
        generation = self._customers.generation
        found = self._customer(await self._db.read(BY_USER, platform, account, user_id))
        if found is not None:
            self._customers.put(found, generation)
            return found.id
        try:
            return (await self._insert_customer(platform, account, user_id, chat_id,
                                                language)).id
        except Duplicate:  # created by a concurrent first message
            return self._customer(await self._db.read(BY_USER, platform, account,
                                                      user_id)).id

    async def _insert_customer(self, platform: str, account: str, user_id: str, chat_id: str,
                               language: str | None) -> Customer:
        customer = Customer(platform=platform, account=account, user_id=user_id,
                            chat_id=chat_id, session_id=secrets.token_hex(16),
                            language=language, active_conversation_id=None, unreachable=False,
                            created_at=utcnow())
        customer.id = (await self._db.write(
            _INSERT, platform, account, user_id, chat_id, customer.session_id, language, False,
            self._db.from_time(customer.created_at)))[0]
        return customer

    async def customer(self, customer_id: int) -> Customer | None:
        cached = self._customers.get(customer_id)
        if cached is not None:
            return cached
        generation = self._customers.generation
        row = self._customer(await self._db.read(_BY_ID, customer_id))
        if row is not None:
            self._customers.put(row, generation)
        return row

    async def set_customer(self, customer_id: int, **fields: Any) -> None:
        await self._update(Customer, customer_id, fields, changes_customer=customer_id)

    def _customer(self, found: tuple | None) -> Customer | None:
        return model(Customer, CUSTOMER, found, self._db) if found else None
