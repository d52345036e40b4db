"""Values in and out of the log: pydantic validates and (de)serializes every recorded value.

A value's type comes from the annotations of the function that produced or consumes it, so a step
that returns a pydantic model gets the same model back on replay. Unannotated values must be
JSON-able. Everything is stored as compact JSON text.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

from aetheris._values import storable_json

ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)


@lru_cache(maxsize=1024)
def _adapter_for(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def adapter(annotation: Any) -> TypeAdapter[Any]:
    if annotation is inspect.Signature.empty or annotation is None:
        return ANY_ADAPTER
    try:
        return _adapter_for(annotation)
    except TypeError:  # unhashable annotation
        return TypeAdapter(annotation)


def return_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any]:
    """The adapter for what ``fn`` returns, from its (resolved) return annotation."""
    try:
        return _return_adapter(fn)
    except TypeError:  # an unhashable callable
        return _resolve_return(fn)


@lru_cache(maxsize=4096)
def _return_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any]:
    # Resolving hints costs more than the rest of a replayed step together: once per function.
    return _resolve_return(fn)


def _resolve_return(fn: Callable[..., Any]) -> TypeAdapter[Any]:
    target = getattr(fn, "func", fn)  # functools.partial: the wrapped function's annotation
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError, AttributeError):
        hints = {}
    return adapter(hints.get("return", inspect.Signature.empty))


def input_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any]:
    """The adapter for a job function's input: the annotation of its second parameter."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return ANY_ADAPTER
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    return adapter(hints.get(params[1].name, inspect.Signature.empty))


def dump(value: Any, via: TypeAdapter[Any], what: str, limit: int) -> str:
    """``value`` as the compact JSON text that is stored; refused unless it reads back as it was
    (``_values.storable_json``: ``UnstorableValue`` naming the place, ``PayloadTooLarge``)."""
    return storable_json(value, what, via=via, limit=limit)


def load(text: str | None, via: TypeAdapter[Any]) -> Any:
    if text is None:
        return None
    # The adapter's validator itself: ``TypeAdapter.validate_json`` only adds option handling we do
    # not use, and this runs for every replayed step (a third of a decode's cost).
    return via.validator.validate_json(text)
