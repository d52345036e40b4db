"""Values as operators see them: secrets redacted, long values cut to a bounded preview.

Redaction is by key name, the smallest hook that covers what tools are called with (``api_key=``,
``{"password": ...}``, an ``Authorization`` header): a mapping key is secret when its name,
lower-cased with ``_``, ``-``, ``.`` and spaces removed, *ends with* one of ``Settings.redact_keys``
(default ``DEFAULT_REDACT_KEYS``; the environment's ``AETHERIS_REDACT_KEYS`` is a comma-separated
list). So ``db_password``, ``X-Api-Key`` and ``access_token`` are redacted and ``max_tokens`` is not.
The value is replaced by ``"[redacted]"`` wherever it sits in the structure.

``preview_args`` is what the ledger stores as ``args_preview`` when a tool is claimed (redacted
*before* it is written: a secret never reaches the table); the trace redacts every value it shows
again, so results, payloads and previews written before a key was added are covered too.

A positional argument is named by its parameter (``redact_positional``): ``call(url, api_key)``
called as ``call(u, k)`` shows ``k`` redacted.

Rejected: a user callable on the ``App`` (a second API to keep stable, and code that may raise
inside the trace), and pattern matching on values (false positives on ids and hashes).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

DEFAULT_REDACT_KEYS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "privatekey",
    "sessionid",
)
REDACTED: Final = "[redacted]"
ARGS_PREVIEW_BYTES: Final = 2048  # what the ledger keeps of a tool's arguments
PREVIEW_CHARS: Final = 200  # what a cut value shows
_MAX_DEPTH: Final = 64  # deeper than this is shown as "[too deep]"


def normalise_keys(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(k for k in (_normal(key) for key in keys) if k)


def _normal(key: str) -> str:
    return "".join(ch for ch in key.lower() if ch not in "_-. ")


def is_secret(key: str, keys: tuple[str, ...]) -> bool:
    name = _normal(key)
    return any(name.endswith(secret) for secret in keys)


def redact(value: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """``value`` (JSON-like) with the values of secret keys replaced, at any depth."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret(str(k), keys) else redact(v, keys, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, keys, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON: shown as text
    return value


def cut(text: str, limit: int | None) -> dict[str, Any] | None:
    """The preview that replaces ``text`` when it is longer than ``limit`` bytes, else None."""
    size = len(text.encode())
    if limit is None or size <= limit:
        return None
    return {"truncated": True, "bytes": size, "preview": text[:PREVIEW_CHARS]}


def jsonable(value: Any) -> Any:
    """A JSON-compatible copy of a tool argument: pydantic models dumped, the rest ``repr``-ed."""
    return json.loads(json.dumps(value, default=_fallback))


def _fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)[:PREVIEW_CHARS]


def redact_positional(
    fn: Any, args: tuple[Any, ...], keys: Iterable[str] = DEFAULT_REDACT_KEYS
) -> tuple[Any, ...]:
    """``args`` with those bound to a parameter named like a secret replaced by ``REDACTED``."""
    try:
        params = list(inspect.signature(fn).parameters.values())  # a partial's: those left to bind
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return args
    secret = normalise_keys(keys)
    shown = list(args)
    for index, param in enumerate(params[: len(args)]):
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            break
        if is_secret(param.name, secret):
            shown[index] = REDACTED
    return tuple(shown)


def preview_args(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    keys: Iterable[str] = DEFAULT_REDACT_KEYS,
    limit: int = ARGS_PREVIEW_BYTES,
) -> str:
    """``{"args": [...], "kwargs": {...}}`` as JSON, secrets redacted, at most about ``limit`` bytes
    (longer: ``{"truncated": true, "bytes": n, "preview": "..."}``). Never raises on odd values."""
    try:
        value = jsonable({"args": list(args), "kwargs": dict(kwargs)})
    except (TypeError, ValueError, RecursionError) as error:  # circular or too deep
        value = {"unprintable": type(error).__name__}
    text = json.dumps(redact(value, normalise_keys(keys)), ensure_ascii=False)
    preview = cut(text, limit)
    return text if preview is None else json.dumps(preview, ensure_ascii=False)


class Values:
    """Recorded JSON texts as the trace shows them: parsed, redacted, cut past ``limit`` bytes."""

    def __init__(self, limit: int | None, keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> None:
        self.limit = limit
        self.keys = normalise_keys(keys)

    def load(self, text: str | None) -> Any:
        if text is None:
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return self._shown(json.dumps(text))  # not JSON (an older or hand-written item): as text
        return self.keep(value)

    def keep(self, value: Any) -> Any:
        if value is None:
            return None
        value = redact(value, self.keys)
        if self.limit is None:
            return value
        # Compact, as the value is stored: the preview and its byte count match the recorded text.
        compact = json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
        return self._shown(compact, value)

    def _shown(self, text: str, value: Any = None) -> Any:
        preview = cut(text, self.limit)
        if preview is not None:
            return preview
        return value if value is not None else json.loads(text)
