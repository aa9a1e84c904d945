"""Who is in support mode with an adapter embedded in a company's own bot or app
(bridge/support_mode.py)."""
from __future__ import annotations

from bridge.store.models import utcnow
from bridge.store.queries import Queries

_USER = "platform = ? AND account = ? AND user_id = ?"
_ENTER = ("INSERT INTO support_mode (platform, account, user_id, since) VALUES (?, ?, ?, ?) "
          "ON CONFLICT DO NOTHING")
_LEAVE = f"DELETE FROM support_mode WHERE {_USER}"
_HOLDS = f"SELECT 1 FROM support_mode WHERE {_USER}"


class SupportModeRows(Queries):
    async def enter_support_mode(self, platform: str, account: str, user_id: str) -> None:
        await self._db.write(_ENTER, platform, account, user_id, self._db.from_time(utcnow()))

    async def leave_support_mode(self, platform: str, account: str, user_id: str) -> None:
        await self._db.write(_LEAVE, platform, account, user_id)

    async def in_support_mode(self, platform: str, account: str, user_id: str) -> bool:
        return await self._db.read(_HOLDS, platform, account, user_id) is not None
