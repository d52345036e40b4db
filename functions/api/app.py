"""HTTP API Lambda (API Gateway HTTP API, payload v2). The logic lives in the runtime layer."""

from aetheris.handlers.api import handler

__all__ = ["handler"]
