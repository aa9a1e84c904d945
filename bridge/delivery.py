"""One queued request on its way to the helpdesk, and the moment it is handed over."""
from __future__ import annotations

import asyncio
import logging

from bridge.store import Store, ToHelpdesk
from bridge.store.store import NextRequest

log = logging.getLogger(__name__)

# Tries to record a handover (about 6 s in all): the helpdesk has the request by then, so
# giving up means sending it again later, and the helpdesk would hold it twice.
RECORD_ATTEMPTS = 6


class Delivery:
    """`done` is called the moment the helpdesk has the request: by the helpdesk link,
    before it passes on the events behind the answer (SATE's reply to a message may be
    the very next one). So a crash can never leave a reply stored while the message it
    answers is still queued, to be sent again and answered twice. Finishing also reads the
    customer's next request, in the same round trip."""

    def __init__(self, store: Store, row: ToHelpdesk) -> None:
        self._store = store
        self._row = row
        self.finished = False
        self.next: NextRequest | None = None

    async def done(self, opened: tuple[int, str] | None = None) -> None:
        """opened: (conversation id, ticket_chat_id) when the request opened a conversation.
        A database away for a moment (a restart, a failover) is waited out."""
        for attempt in range(RECORD_ATTEMPTS):
            if self.finished:
                return
            try:
                self.next = await self._store.finish_to_helpdesk(self._row, "done",
                                                                 opened=opened)
                self.finished = True
            except Exception:
                if attempt == RECORD_ATTEMPTS - 1:
                    raise
                log.warning("could not record that the helpdesk has a %s; retrying",
                            self._row.kind, exc_info=True)
                await asyncio.sleep(0.2 * 2 ** attempt)
