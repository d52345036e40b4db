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
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError

from aetheris.errors import NonRetryableError, PayloadTooLarge

MAX_DEPTH = 64
MAX_INT_DIGITS = 640

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_KEY_CHARS = 60
_PATH_CHARS = 240
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
            f"reads them back, so a value must be finite numbers of at most {MAX_INT_DIGITS} digits, "
            f"valid Unicode text and at most {MAX_DEPTH} levels of nesting"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.path, self.problem))


def check_storable(value: object, what: str, *, root: str | None = None) -> None:
    """Raise ``UnstorableValue`` if ``value`` cannot be stored and read back.

    ``what`` names the value in the message (``input``, ``result of step 'charge'``); the path
    starts with ``root`` (``what`` by default), e.g. ``result.items[3].price``. Containers are
    dicts, lists, tuples, sets and pydantic models (read through their own serializer); anything
    else is a leaf that pydantic turns into JSON (dates, UUIDs, enums).
    """
    try:
        _walk(value, 0)
    except _Refused as refused:
        path = (what if root is None else root) + "".join(_step(key) for key in reversed(refused.keys))
        raise UnstorableValue(what, path, refused.problem) from None


def storable_json(
    value: object,
    what: str,
    *,
    via: TypeAdapter[Any] | None = None,
    limit: int | None = None,
    root: str | None = None,
) -> str:
    """``value`` as the JSON text the runtime stores, once it passed ``check_storable`` and ``limit``.

    ``via`` is the adapter of the value's declared type (``Any`` by default); ``limit`` is checked
    on the UTF-8 bytes of the returned text (``PayloadTooLarge`` past it).
    """
    check_storable(value, what, root=root)
    try:
        text = (via or _ANY).dump_json(value).decode()
    except PydanticSerializationError as error:
        path = what if root is None else root
        raise UnstorableValue(what, path, f"not JSON-representable ({error})") from None
    if limit is not None:
        size = len(text.encode())
        if size > limit:
            raise PayloadTooLarge(what, size, limit)
    return text


class _Refused(Exception):
    """Raised at the unstorable leaf; each container on the way up adds its key (no path is built
    for values that pass: the walk stays one type check per leaf)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.keys: list[object] = []


def _walk(value: object, depth: int) -> None:
    # ``type(x) is`` first: one comparison per leaf for the JSON types, subclasses in _walk_other.
    if type(value) is str:
        _check_text(value, "a string holding a lone surrogate (not valid Unicode): fix the text's encoding")
    elif type(value) is float:
        if not math.isfinite(value):
            raise _Refused(
                f"{value} is not a finite number (JSON has none; a literal like 1e400 reads as inf): "
                f"send null, or the number as a string"
            )
    elif type(value) is int:
        if value.bit_length() > _SAFE_BITS:
            _check_int(value)
    elif value is None or type(value) is bool:
        return
    elif type(value) is list or type(value) is tuple:
        _walk_children(enumerate(value), depth)
    elif type(value) is dict:
        _walk_children(value.items(), depth)
    else:
        _walk_other(value, depth)


def _walk_other(value: object, depth: int) -> None:
    """Subclasses of the JSON types, sets, mappings and models: the rare, slower path."""
    if isinstance(value, str):
        _walk(str(value), depth)
    elif isinstance(value, bool):
        return
    elif isinstance(value, float):
        _walk(float(value), depth)
    elif isinstance(value, int):
        _walk(int(value), depth)
    elif isinstance(value, Mapping):
        _walk_children(value.items(), depth)
    elif isinstance(value, list | tuple | set | frozenset):
        _walk_children(enumerate(value), depth)
    elif hasattr(type(value), "__pydantic_serializer__") or hasattr(value, "__dataclass_fields__"):
        # A model (or dataclass) is what its serializer makes of it: walk that, at the same depth.
        dumped = _ANY.dump_python(value, mode="python")
        if dumped is not value:
            _walk(dumped, depth)


def _walk_children(children: Iterable[tuple[object, object]], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _Refused(
            f"nested deeper than {MAX_DEPTH} levels: flatten it, or send the deep part as a string"
        )
    for key, child in children:
        try:
            if isinstance(key, str):
                _check_text(key, "a key holding a lone surrogate (not valid Unicode): fix the key's encoding")
            _walk(child, depth + 1)
        except _Refused as refused:
            refused.keys.append(key)
            raise


def _check_text(text: str, problem: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")  # in C: a lone surrogate is the one thing UTF-8 cannot encode
        except UnicodeEncodeError:
            raise _Refused(problem) from None


def _step(key: object) -> str:
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key) and len(key) <= _KEY_CHARS:
        return f".{key}"
    # A path is for reading: a huge key is cut, so an error about it stays small.
    shown = repr(key)
    return f"[{shown[:_KEY_CHARS]}…]" if len(shown) > _KEY_CHARS else f"[{shown}]"


def _check_int(value: int) -> None:
    digits = _digit_count(value)
    if digits > MAX_INT_DIGITS:
        raise _Refused(
            f"an integer of {digits} digits, over the {MAX_INT_DIGITS} digits JSON readers take: "
            f"send it as a string"
        )


def _digit_count(value: int) -> int:
    # str() itself is refused past Python's int_max_str_digits: estimate from the bit length, then
    # settle the one-off edge by comparing with a power of ten.
    magnitude = abs(value)
    estimate = int(magnitude.bit_length() * math.log10(2)) + 1
    if estimate > 1 and magnitude < 10 ** (estimate - 1):
        return estimate - 1
    return estimate
