"""Text as it enters the bridge, from a platform or from the helpdesk: C0 control
characters (other than tab, newline and carriage return) and DEL are removed. No chat
shows them, and renderers use a control character of their own as a placeholder, which a
text must never be able to forge."""
from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_controls(text: str) -> str:
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text
