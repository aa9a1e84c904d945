"""The sandbox helpdesk: a real Socket.IO server speaking the Eusate Helpdesk API, for the
tests, `helpdesk-bridge demo` and `helpdesk-bridge sandbox` (bridge/sandbox/helpdesk.py)."""
from bridge.sandbox.helpdesk import SandboxHelpdesk
from bridge.sandbox.wire import (
    DEFAULT_API_KEY,
    NAMESPACE,
    OPEN_LIMIT,
    Behaviour,
    SandboxConversation,
    envelope,
    livekit_token,
    now_iso,
)

__all__ = ["DEFAULT_API_KEY", "NAMESPACE", "OPEN_LIMIT", "Behaviour", "SandboxConversation",
           "SandboxHelpdesk", "envelope", "livekit_token", "now_iso"]
