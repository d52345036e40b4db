"""The determinism guard: orchestration code may not read the clock, randomness or the network.

While a job function runs (and only then), the functions below raise ``DeterminismViolation``
when called *directly* from code outside the runtime, the standard library and the libraries it
is built on; the runtime suspends the guard inside its own operations. Steps run on their own
threads, where nothing is guarded. Network connections and subprocesses are caught with an audit
hook (``sys.addaudithook``) whatever library opens them.

Guarded: ``time.time/time_ns/monotonic/monotonic_ns``, ``datetime.datetime.now/utcnow/today``,
the module-level functions of ``random``, ``uuid.uuid1/uuid4``, ``os.urandom``, ``socket.connect``,
``subprocess.Popen``, ``os.system`` and ``os.posix_spawn``.

Names bound by ``from ... import`` before the guard was installed (``from datetime import
datetime``, ``from time import time``, ``from uuid import uuid4`` — the most common idioms) are
rebound to the guarded functions in the job function's module when the job is registered
(``protect``); the rebound ``datetime`` still passes ``isinstance`` checks for every datetime.

What it cannot catch (documented limits): such names bound in *other* modules the job function
calls into, private ``random.Random()`` instances, ``datetime.date.today()``, time read by a library
on the user's behalf (only direct calls are checked), C extensions, and reads of mutable global
state. Replay divergence detection (``replay.py``) is the backstop for all of those.

Inside a step, a network connection made outside ``sctx.tool`` is reported as a warning in the
step's outcome event, or refused with ``UntrackedEffect`` when the app is ``strict_effects``.
"""

from __future__ import annotations

import datetime as _datetime
import functools
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aetheris.errors import NondeterminismError, UntrackedEffect

_ADVICE = {
    "clock": "use ctx.now(), or read the time inside a step",
    "random": "use ctx.random() or ctx.uuid(), or draw it inside a step",
    "network": "call the outside world from a step, through sctx.tool(...)",
}
_LIBRARIES = {
    "aetheris", "aetheris_infra", "boto3", "botocore", "urllib3", "s3transfer", "pydantic",
    "pydantic_core", "aws_lambda_powertools", "moto", "werkzeug", "typing_extensions", "dateutil",
    "jmespath", "annotated_types",
}  # fmt: skip


class DeterminismViolation(NondeterminismError):
    """Orchestration code made a call whose answer changes from one replay to the next."""

    def __init__(self, job_id: str, call: str, kind: str) -> None:
        self.job_id, self.call, self.kind = job_id, call, kind
        self.position, self.recorded, self.requested = -1, "a deterministic call", call
        Exception.__init__(
            self,
            f"job {job_id}: orchestration code called {call}, which differs on every replay; "
            f"{_ADVICE[kind]}.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.call, self.kind))


@dataclass
class _StepWatch:
    strict: bool
    warnings: list[str] = field(default_factory=list)


_orchestrating: ContextVar[str | None] = ContextVar("aetheris_orchestrating", default=None)
_step: ContextVar[_StepWatch | None] = ContextVar("aetheris_step", default=None)
_in_effect: ContextVar[bool] = ContextVar("aetheris_in_effect", default=False)
_installed = False
_install_lock = threading.Lock()


@contextmanager
def orchestrating(job_id: str) -> Iterator[None]:
    """Guard the block: it runs the job function."""
    install()
    token = _orchestrating.set(job_id)
    try:
        yield
    finally:
        _orchestrating.reset(token)


class _Suspended:
    """``suspended()``'s block. A class, not ``@contextmanager``: every replayed operation enters
    one, and a generator-based context costs several times more (≈ 2 µs) for the same two resets."""

    __slots__ = ("_effect", "_token")

    def __enter__(self) -> None:
        self._token = _orchestrating.set(None)
        self._effect = _in_effect.set(True)

    def __exit__(self, *exc: object) -> None:
        _in_effect.reset(self._effect)
        _orchestrating.reset(self._token)


def suspended() -> AbstractContextManager[None]:
    """The runtime's own work inside an operation: nothing is guarded."""
    return _Suspended()


def in_step_body() -> bool:
    """Is this code running inside a step body (not the orchestration)?"""
    return _step.get() is not None


@contextmanager
def watching_step(strict: bool) -> Iterator[_StepWatch]:
    """Inside a step body (its own thread): report network connections made outside tools."""
    install()
    watch = _StepWatch(strict)
    token = _step.set(watch)
    try:
        yield watch
    finally:
        _step.reset(token)


def _user_frame(depth: int) -> bool:
    frame = sys._getframe(depth)
    module = str(frame.f_globals.get("__name__", "")).split(".")[0]
    return module not in sys.stdlib_module_names and module not in _LIBRARIES


def _guarded(fn: Callable[..., Any], call: str, kind: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        job_id = _orchestrating.get()
        if job_id is not None and _user_frame(2):
            raise DeterminismViolation(job_id, call, kind)
        return fn(*args, **kwargs)

    return wrapper


_REAL_DATETIME = _datetime.datetime


class _AnyDatetime(type):
    """Every datetime is an instance of the guarded class, as it is of ``datetime.datetime``."""

    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, _REAL_DATETIME)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _REAL_DATETIME)


class _GuardedDatetime(_datetime.datetime, metaclass=_AnyDatetime):
    """Stands in for ``datetime.datetime`` once installed; to pydantic it is a plain datetime."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.datetime_schema()

    @classmethod
    def now(cls, tz: _datetime.tzinfo | None = None) -> Any:
        job_id = _orchestrating.get()
        if job_id is not None and _user_frame(2):
            raise DeterminismViolation(job_id, "datetime.now()", "clock")
        return super().now(tz)

    @classmethod
    def utcnow(cls) -> Any:
        job_id = _orchestrating.get()
        if job_id is not None and _user_frame(2):
            raise DeterminismViolation(job_id, "datetime.utcnow()", "clock")
        return super().utcnow()

    @classmethod
    def today(cls) -> Any:
        job_id = _orchestrating.get()
        if job_id is not None and _user_frame(2):
            raise DeterminismViolation(job_id, "datetime.today()", "clock")
        return super().today()


_NETWORK_EVENTS = {"socket.connect"}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _NETWORK_EVENTS and event not in _PROCESS_EVENTS:
        return
    job_id = _orchestrating.get()
    if job_id is not None:
        raise DeterminismViolation(job_id, f"{event}{args[:1]!r}", "network")
    watch = _step.get()
    if watch is not None and event in _NETWORK_EVENTS and not _in_effect.get():
        message = f"{event} to {args[1] if len(args) > 1 else '?'} outside sctx.tool: it is not recorded"
        if watch.strict:
            raise UntrackedEffect(message)
        watch.warnings.append(message)


_replacements: dict[int, Any] = {}  # id(original) -> its guarded stand-in


def _replace(module: Any, name: str, guarded: Any) -> None:
    original = getattr(module, name)
    _replacements[id(original)] = guarded
    setattr(module, name, guarded)


def install() -> None:
    """Patch the guarded functions and add the audit hook, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        for name in ("time", "time_ns", "monotonic", "monotonic_ns"):
            _replace(time, name, _guarded(getattr(time, name), f"time.{name}()", "clock"))
        for name in ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform",
                     "getrandbits", "randbytes", "gauss"):  # fmt: skip
            _replace(random, name, _guarded(getattr(random, name), f"random.{name}()", "random"))
        _replace(uuid, "uuid1", _guarded(uuid.uuid1, "uuid.uuid1()", "random"))
        _replace(uuid, "uuid4", _guarded(uuid.uuid4, "uuid.uuid4()", "random"))
        _replace(os, "urandom", _guarded(os.urandom, "os.urandom()", "random"))
        _replace(_datetime, "datetime", _GuardedDatetime)
        sys.addaudithook(_audit)
        _installed = True


def protect(fn: Callable[..., Any]) -> None:
    """Rebind, in ``fn``'s module, names imported from the guarded modules before the guard existed
    (``from datetime import datetime``): orchestration code reaching them is then refused too."""
    install()
    namespace = getattr(fn, "__globals__", None)
    if not isinstance(namespace, dict):
        return
    for name, value in list(namespace.items()):
        guarded = _replacements.get(id(value))
        if guarded is not None and guarded is not value:
            namespace[name] = guarded
