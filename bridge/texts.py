"""Customer-facing texts. Every one can be overridden in [texts], per language in [texts.<lang>]."""
from __future__ import annotations

DEFAULT_TEXTS: dict[str, str] = {
    "greeting": "Hi! Write your question and our support team will answer here.",
    # {new}, {conversations}, {close}, {call}: how the commands are typed on the platform
    "help": "Write a message to talk to support. Commands: {new} starts a new conversation, "
            "{conversations} lists your open ones, {close} ends the current one, {call} starts "
            "a voice call.",
    "sate_name": "SATE",
    "agent_joined": "You're now chatting with {agent}.",
    "close_prompt": "Did this solve your issue?",
    "close_yes": "Yes, solved",
    "close_no": "No, I still need help",
    "close_kept_open": "OK, the conversation stays open. Tell us what you still need.",
    "closed": "This conversation is closed.",
    "auto_closed": "This conversation was closed because it looked resolved.",
    "rating_prompt": "How would you rate the support you got?",
    "rated": "Rated {rating}/5 - thank you!",
    "comment_prompt": "Would you like to add a comment? Write it now, or skip.",
    "comment_skip": "Skip",
    "comment_thanks": "Thanks for your feedback!",
    "no_longer_open": "This conversation is no longer open.",
    "paced": "You're writing faster than we can read: your messages will reach us "
             "shortly, in order.",
    "blocked": "Sorry, messages from this account are no longer passed on to our support team.",
    "conversation_limit": "You already have {count} open conversations, the most allowed. "
                          "Continue one of them:",
    "conversation_list": "Your open conversations:",
    "conversation_label": "Conversation {number}",
    "no_conversations": "You have no open conversations. Write a message to start one.",
    "switched": "You're now in {label}.",
    "new_conversation": "OK, your next message starts a new conversation.",
    "call_invite": "Your voice call is ready.",
    "call_join": "Join the call",
    "call_ended": "The call has ended.",
    "call_refused": "A voice call isn't possible right now: {reason}",
    "call_not_configured": "Voice calls are not available here.",
    "send_failed": "Sorry, your message could not be delivered to support: {reason}",
    "attachments_unsupported": "Attachments can't be sent here.",
    "edited_prefix": "(edited) ",
    "message_not_shown": "A message from support could not be shown here. Please ask for it "
                         "to be sent again.",
    # Said by a platform adapter itself, outside any conversation:
    "not_received": "Sorry, your last message could not be received. Please send it again.",
    "file_too_large": "That file is larger than {limit}, the most we can receive here, so the "
                      "support team cannot see it. Please send a smaller file, or a link to it.",
    "cannot_send": "Sorry, {kind} cannot be sent to the support team. Please describe it in "
                   "words.",
    "write_in_private": "Please write to me in a private chat, so your conversation stays "
                        "private.",
    "only_opener": "Only the person who opened this conversation can answer this.",
    "new_topic": "New conversation",  # a topic's name until its first message names it
}


class Texts:
    """Looks a template up in the customer's language, then the default one, then built-ins."""

    def __init__(self, overrides: dict[str, dict[str, str]] | None = None,
                 default_language: str = "en") -> None:
        self._overrides = overrides or {}
        self._default_language = default_language

    def get(self, key: str, language: str | None = None, **values: object) -> str:
        for table in (self._overrides.get(language or ""), self._overrides.get(""),
                      self._overrides.get(self._default_language), DEFAULT_TEXTS):
            if table and key in table:
                return table[key].format(**values)
        raise KeyError(key)
