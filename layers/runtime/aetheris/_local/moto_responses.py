"""Two per-request costs of moto's response layer remembered — pure functions, same answers.

- For every request moto lists the handler class's methods with ``inspect.getmembers`` to check the
  action has one. The answer depends only on the class, so it is remembered per class.
- moto's response serializer looks up every member of every output shape (DynamoDB: ten per
  ``AttributeValue``) through six alias providers, most of which miss, then tries each key with
  ``obj[key]`` and a caught ``KeyError``. For a plain ``dict`` the list of keys to try depends only
  on the member name and its shape (and that shape's parent, which the serializer sets), so it is
  remembered, and each key is tried with ``dict.get`` (the same answer, no exception); any other
  object goes through moto's code as before. Transformers and the JSON are moto's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

_MAX_KEYS = 65536


def install() -> None:
    """Patch moto's action lookup and its serializer's key aliasing (call once, under a lock)."""
    from moto.core import responses, serialize, utils

    remembered = functools.lru_cache(maxsize=1024)(utils.method_names_from_class)
    utils.method_names_from_class = remembered
    responses.method_names_from_class = remembered  # type: ignore[attr-defined]
    picker = serialize.XFormedAttributePicker
    picker.get_possible_keys = _remembered_keys(picker.get_possible_keys, serialize.DEFAULT_ALIAS_PROVIDERS)  # type: ignore[method-assign]


def _dict_lookup(pick: Any, possible_keys: Any, missing: object, get_value: Any) -> Any:
    def __call__(self: Any, context: Any) -> Any:
        """moto's ``AttributePicker.__call__``; for a plain ``dict`` a key without a dot is looked up
        with ``dict.get`` — what moto's ``get_value`` does for one (``obj[key]``, a miss caught as
        ``KeyError``) without raising and catching an exception for each of the ~9 missing
        members of every ``AttributeValue``."""
        obj = context.obj
        if type(obj) is not dict:
            return pick(self, context)
        for possible_key in possible_keys(self, context):
            if type(possible_key) is str and "." not in possible_key:
                value = obj.get(possible_key, missing)
            else:
                value = get_value(obj, possible_key, missing)
            if value is not missing:
                break
        else:
            value = None
        key_path = f"{context.key_path}.{context.key}"
        for transform_path, transform in self.response_transformers.items():
            if key_path.endswith(transform_path):
                value = transform(value)
                break
        return value

    return __call__


def _remembered_keys(possible_keys: Any, default_providers: object) -> Any:
    # (member name, id(shape), id(parent)) -> (shape, parent, keys); the shapes are kept so their
    # ids cannot be reused while the entry exists.
    memory: dict[tuple[str, int, int], tuple[Any, Any, tuple[str, ...]]] = {}

    def get_possible_keys(self: Any, context: Any) -> Iterator[str]:
        if type(context.obj) is not dict or self.alias_providers is not default_providers:
            yield from possible_keys(self, context)
            return
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (context.key, id(shape), id(parent))
        entry = memory.get(key)
        if entry is None or entry[0] is not shape or entry[1] is not parent:
            if len(memory) >= _MAX_KEYS:
                memory.clear()
            entry = (shape, parent, tuple(possible_keys(self, context)))
            memory[key] = entry
        yield from entry[2]

    return get_possible_keys
