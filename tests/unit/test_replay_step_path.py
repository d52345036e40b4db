"""What every replayed step goes through, made cheap, must still do what it did: a generator is
refused as a step however often it is asked about, names are chosen the same way on every call,
store errors under the job function become ``StoreFailure``, and the guard's suspension nests and
always restores what it found."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from aetheris._engine import guard
from aetheris._engine.body import refuse_unrunnable
from aetheris._engine.job_context import step_name
from aetheris._engine.store_io import StoreFailure, runtime_io
from aetheris.errors import InvalidStep


def plain(sctx: object, n: int) -> int:
    return n


def yielding(sctx: object) -> Iterator[int]:
    yield 1


async def async_yielding(sctx: object) -> object:  # an async generator
    yield 1


def test_refuse_unrunnable_refuses_a_generator_every_time_it_is_asked() -> None:
    for _ in range(3):
        refuse_unrunnable(plain, "step")  # remembered as runnable
        for fn in (yielding, async_yielding, functools.partial(yielding)):
            with pytest.raises(InvalidStep):
                refuse_unrunnable(fn, "step")


def test_refuse_unrunnable_judges_a_function_by_its_code_not_by_its_name() -> None:
    def closure(sctx: object) -> int:
        return 1

    refuse_unrunnable(closure, "step")
    closure.__code__ = yielding.__code__  # same function object, now a generator
    with pytest.raises(InvalidStep):
        refuse_unrunnable(closure, "step")


def test_refuse_unrunnable_takes_closures_of_one_def_and_callable_objects() -> None:
    class Callable_:
        def __call__(self, sctx: object) -> int:
            return 1

    for n in range(5):
        refuse_unrunnable(lambda sctx, n=n: n, "step")
        refuse_unrunnable(Callable_(), "step")


def test_step_name_is_the_same_on_every_call_and_falls_back_to_the_position() -> None:
    def bad_name() -> None: ...

    bad_name.__name__ = "not a valid name!"
    for _ in range(3):
        assert step_name(plain, 7) == "plain"
        assert step_name(functools.partial(plain, n=1), 7) == "plain"
        assert step_name(lambda sctx: 1, 7) == "step-7"
        assert step_name(bad_name, 8) == "step-8"


def test_runtime_io_turns_a_store_error_into_store_failure_and_leaves_others_alone() -> None:
    error = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")
    with pytest.raises(StoreFailure) as failed, runtime_io():
        raise error
    assert failed.value.error is error and failed.value.__cause__ is error

    with pytest.raises(KeyError), runtime_io():
        raise KeyError("the job's own")
    with runtime_io():
        pass  # and a block that does not raise is left as it is


def test_suspended_nests_and_restores_the_guard_even_when_its_block_raises() -> None:
    with guard.orchestrating("job-1"):
        assert guard._orchestrating.get() == "job-1"
        with guard.suspended():
            assert guard._orchestrating.get() is None and guard._in_effect.get()
            with pytest.raises(RuntimeError), guard.suspended():
                raise RuntimeError("inside")
            assert guard._orchestrating.get() is None and guard._in_effect.get()
        assert guard._orchestrating.get() == "job-1" and not guard._in_effect.get()
