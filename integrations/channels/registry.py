"""Which channels this gateway serves: each channel module's `from_environment()` returns its plugin
when the deployment configured it (its secrets are in the environment), or None."""

from __future__ import annotations

import importlib
import logging

from integrations.channels.base import ChannelPlugin

log = logging.getLogger(__name__)

CHANNEL_MODULES = (
    "integrations.channels.telegram",
    "integrations.channels.sms",
    "integrations.channels.voice",
    "integrations.channels.wechat",
)


def configured_channels() -> list[ChannelPlugin]:
    plugins = []
    for name in CHANNEL_MODULES:
        plugin = importlib.import_module(name).from_environment()
        if plugin is not None:
            log.info("channel %s is on", plugin.name)
            plugins.append(plugin)
    return plugins
