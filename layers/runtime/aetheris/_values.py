"""What the runtime can store and read back: the one check every recorded value passes before a write.

The runtime stores a value as compact JSON text, UTF-8, non-ASCII left as is (pydantic's
``dump_json``), and reads it back with pydantic's JSON reader (jiter) or Python's ``json``. A value
is *storable* when that round trip gives it back unchanged, on every reader the runtime and its
clients use. ``check_storable`` refuses, naming the place inside the value
(``input.items[3].price``):

* nesting deeper than ``MAX_DEPTH`` containers. The readers' own limits are jiter's 201 levels,
  pydantic's serializer's ~255, Python's ``json`` ~1,000 (its recursion limit, less on a deep stack)
  and DynamoDB's 32 for a nested map. Values are stored as JSON *text*, so DynamoDB's limit does not
  apply; 64 leaves room for the envelopes a value travels in (a signal message, an exported
  history, an API answer) under jiter's 201.
* ``inf`` and ``nan`` (and literals such as ``1e400`` that a reader turns into ``inf``): JSON has
  no such numbers, pydantic would write ``null``, and a ``-> float`` step would fail on replay.
* integers of more than ``MAX_INT_DIGITS`` digits: Python refuses to convert longer ones to or from
  text (its ``int_max_str_digits``, 4,300 by default and configurable down to 640, never lower), so
  640 is read back by every CPython, however configured.
* strings and keys holding a lone surrogate (``"\\ud800"``): not encodable as UTF-8, so the write
  would fail.
* values that are not JSON-representable at all (pydantic cannot serialize them).

``storable_json`` checks the value, dumps it the one way the runtime stores values, and measures the
size on those exact bytes — the bytes that will be written. Escaping non-ASCII (``ensure_ascii``)
would make a character up to 6 bytes (12 for one outside the BMP) instead of 2-4, so a size checked
on one encoding and written in the other can pass the check and still overflow the 400 KB item.

Rejected: checking the JSON text after the dump (pydantic has already turned ``inf`` into ``null``
there, and a text has no paths to name), and storing values as DynamoDB maps (32 levels, 38-digit
numbers, no empty strings in older tables).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError

from aetheris.errors import NonRetryableError, PayloadTooLarge

MAX_DEPTH = 64
MAX_INT_DIGITS = 640

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_SURROGATE = re.compile("[\ud800-\udfff]")
_KEY_CHARS = 60
_PATH_CHARS = 240
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Bits that hold MAX_INT_DIGITS decimal digits; ints under this need no digit count.
_SAFE_BITS = int(MAX_INT_DIGITS * math.log2(10)) - 1


class UnstorableValue(NonRetryableError):
    """A value the runtime cannot store and read back unchanged (see ``aetheris._values``)."""

    def __init__(self, what: str, path: str, problem: str) -> None:
        if len(path) > _PATH_CHARS:  # 64 levels of keys: keep both ends, where the reader looks
            path = f"{path[: _PATH_CHARS // 2 - 1]}…{path[-(_PATH_CHARS // 2) :]}"
        self.what, self.path, self.problem = what, path, problem
        super().__init__(
            f"{path}: {problem}. The {what} cannot be stored: the runtime keeps values as JSON and "
            f"reads them back; send a value that JSON holds exactly (finite numbers of at most "
            f"{MAX_INT_DIGITS} digits, valid Unicode text, at most {MAX_DEPTH} levels of nesting), "
            f"e.g. a string for a huge number"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.path, self.problem))


def check_storable(value: object, what: str) -> None:
    """Raise ``UnstorableValue`` if ``value`` cannot be stored and read back; ``what`` starts the path.

    Containers are dicts, lists, tuples, sets and pydantic models (read through their own
    serializer); anything else is a leaf that pydantic turns into JSON (dates, UUIDs, enums).
    """
    _walk(value, what, 0, what)


def storable_json(
    value: object, what: str, *, via: TypeAdapter[Any] | None = None, limit: int | None = None
) -> str:
    """``value`` as the JSON text the runtime stores, once it passed ``check_storable`` and ``limit``.

    ``via`` is the adapter of the value's declared type (``Any`` by default); ``limit`` is checked
    on the UTF-8 bytes of the returned text (``PayloadTooLarge`` past it).
    """
    check_storable(value, what)
    try:
        text = (via or _ANY).dump_json(value).decode()
    except PydanticSerializationError as error:
        raise UnstorableValue(what, what, f"not JSON-representable ({error})") from None
    if limit is not None:
        size = len(text.encode())
        if size > limit:
            raise PayloadTooLarge(what, size, limit)
    return text


def _walk(value: object, path: str, depth: int, what: str) -> None:
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise UnstorableValue(what, path, "a string holding a lone surrogate (not valid Unicode)")
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableValue(
                what, path, f"{value} is not a finite number (JSON has no inf or nan; 1e400 is inf)"
            )
        return
    if isinstance(value, int):
        _check_int(value, path, what)
        return
    children = _children(value)
    if children is None:
        return
    if depth >= MAX_DEPTH:
        raise UnstorableValue(what, path, f"nested deeper than {MAX_DEPTH} levels")
    for key, child in children:
        if isinstance(key, str):
            if not key.isascii() and _SURROGATE.search(key):
                raise UnstorableValue(what, path, f"a key holding a lone surrogate ({key!r})")
            step = f".{key}" if _IDENTIFIER.match(key) and len(key) <= _KEY_CHARS else _index(key)
        else:
            step = _index(key)
        _walk(child, path + step, depth + 1, what)


def _index(key: object) -> str:
    # A path is for reading: a huge key is cut, so an error about it stays small.
    shown = repr(key)
    return f"[{shown[:_KEY_CHARS]}…]" if len(shown) > _KEY_CHARS else f"[{shown}]"


def _children(value: object) -> list[tuple[object, object]] | None:
    """A container's (key or index, child) pairs; ``None`` for a leaf."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return list(enumerate(value))
    if hasattr(type(value), "__pydantic_serializer__") or hasattr(value, "__dataclass_fields__"):
        # A model (or dataclass) is what its serializer makes of it: walk that.
        dumped = _ANY.dump_python(value, mode="python")
        return _children(dumped) if dumped is not value else None
    return None


def _check_int(value: int, path: str, what: str) -> None:
    if value.bit_length() <= _SAFE_BITS:
        return
    digits = _digit_count(value)
    if digits > MAX_INT_DIGITS:
        raise UnstorableValue(
            what, path, f"an integer of {digits} digits, over the {MAX_INT_DIGITS} digits JSON readers take"
        )


def _digit_count(value: int) -> int:
    # str() itself is refused past Python's int_max_str_digits: estimate from the bit length, then
    # settle the one-off edge by comparing with a power of ten.
    magnitude = abs(value)
    estimate = int(magnitude.bit_length() * math.log10(2)) + 1
    if estimate > 1 and magnitude < 10 ** (estimate - 1):
        return estimate - 1
    return estimate
