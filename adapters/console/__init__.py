from adapters.console.adapter import ConsoleAdapter, ConsoleSettings, Shown

__all__ = ["ConsoleAdapter", "ConsoleSettings", "Shown"]
