"""The runtime a Lambda handler uses: built lazily from the environment on the first event.

Nothing is read or constructed at import time. ``use(runtime)`` installs a prepared runtime (the
local stack and tests do this) and ``use(None)`` resets it, so the next event builds a fresh one.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aetheris.app import App
from aetheris.config import Settings
from aetheris.runtime import Runtime

_lock = threading.Lock()
_runtime: Runtime | None = None
_bound = threading.local()  # a runtime bound to this thread (local workers each have their own)


def load_app(path: str) -> App:
    """Import the ``App`` named ``"package.module:attribute"``."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"AETHERIS_APP must look like 'package.module:app', got {path!r}")
    app = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(app, App):
        raise TypeError(f"{path} is a {type(app).__name__}, not an aetheris.App")
    return app


def runtime() -> Runtime:
    global _runtime
    bound: Runtime | None = getattr(_bound, "runtime", None)
    if bound is not None:
        return bound
    with _lock:
        if _runtime is None:
            settings = Settings.from_env()
            _runtime = Runtime(load_app(settings.app), settings)
        return _runtime


def use(prepared: Runtime | None) -> None:
    global _runtime
    with _lock:
        _runtime = prepared


@contextmanager
def bound(prepared: Runtime) -> Iterator[Runtime]:
    """Within the block, handlers called on this thread use ``prepared`` (one runtime per local worker)."""
    previous = getattr(_bound, "runtime", None)
    _bound.runtime = prepared
    try:
        yield prepared
    finally:
        _bound.runtime = previous
