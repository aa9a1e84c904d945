from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.embed import install
from adapters.telegram.settings import TelegramSettings

__all__ = ["TelegramAdapter", "TelegramSettings", "install"]
