"""Support mode, for an adapter embedded in a company's own bot or app (adapters/*/embed.py).

A chat user who asks for support (/support) talks to the helpdesk until they leave it, or
their conversation ends; everyone else keeps talking to the company's bot. Who is in
support mode is kept in the database, not in one process: a restart (a deploy) keeps it,
and every daemon of a database knows it, whichever receives the user's next message.
"""
from __future__ import annotations

from bridge.store import Store


class SupportMode:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def enter(self, platform: str, account: str, user_id: str) -> None:
        await self._store.enter_support_mode(platform, account, user_id)

    async def leave(self, platform: str, account: str, user_id: str) -> None:
        await self._store.leave_support_mode(platform, account, user_id)

    async def holds(self, platform: str, account: str, user_id: str) -> bool:
        """True while this user is in support mode."""
        return await self._store.in_support_mode(platform, account, user_id)
