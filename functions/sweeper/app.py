"""Sweeper Lambda (EventBridge schedule). The logic lives in the runtime layer."""

from aetheris.handlers.sweeper import handler

__all__ = ["handler"]
