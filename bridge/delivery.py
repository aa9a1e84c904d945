"""One queued request on its way to the helpdesk, and the moment it is handed over."""
from __future__ import annotations

from bridge.recording import record
from bridge.store import Store, ToHelpdesk
from bridge.store.store import NextRequest


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
        """opened: (conversation id, ticket_chat_id) when the request opened a conversation."""
        if not self.finished:
            self.next = await record(
                lambda: self._store.finish_to_helpdesk(self._row, "done", opened=opened),
                f"the helpdesk has a {self._row.kind}")
            self.finished = True
