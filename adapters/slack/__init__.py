from adapters.slack.adapter import SlackAdapter
from adapters.slack.embed import install
from adapters.slack.settings import SlackSettings

__all__ = ["SlackAdapter", "SlackSettings", "install"]
