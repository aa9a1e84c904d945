"""Adapters are plugins: found through the `helpdesk_bridge.adapters` entry points, so the
core never imports them and a company can ship an adapter of its own."""
from __future__ import annotations

from importlib.metadata import entry_points

from bridge.adapter import Adapter
from bridge.config import Settings

GROUP = "helpdesk_bridge.adapters"


def adapter_classes() -> dict[str, type[Adapter]]:
    return {point.name: point.load() for point in entry_points(group=GROUP)}


def adapter_schemas() -> dict[str, type]:
    return {name: cls.Settings for name, cls in adapter_classes().items()}


def build_adapters(settings: Settings, **options) -> list[Adapter]:
    """One adapter per enabled config section."""
    classes = adapter_classes()
    return [classes[name](section, **options.get(name, {}))
            for name, section in settings.adapters.items()]
