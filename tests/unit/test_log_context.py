"""``aetheris._log_context``: a tick's keys on every line, on the threads it starts, gone after it;
and ``aetheris dev``'s readable text lines (``aetheris_infra.dev_logs``)."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator

import pytest

from aetheris import _log_context


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log = _log_context.logger("aetheris.test_log_context")
    keep = Keep(logging.DEBUG)
    log.addHandler(keep)
    log.setLevel(logging.DEBUG)
    yield seen
    log.removeHandler(keep)


def keys_of(record: logging.LogRecord) -> dict[str, object]:
    return {k: getattr(record, k) for k in (*_log_context.TICK_KEYS, "step") if hasattr(record, k)}


def test_tick_keys_reach_lines_written_inside_and_are_gone_after(records: list[logging.LogRecord]) -> None:
    log = logging.getLogger("aetheris.test_log_context")
    with _log_context.tick(job_id="j-1", seq=3, worker_id="w-1"):
        _log_context.add(job_type="refund", fence=2, attempt=None)  # None: not known, left out
        log.info("inside")
        log.info("explicit", extra={"seq": 99})  # the call's own extra wins
    log.info("after")

    assert [keys_of(r) for r in records] == [
        {"job_id": "j-1", "job_type": "refund", "seq": 3, "fence": 2, "worker_id": "w-1"},
        {"job_id": "j-1", "job_type": "refund", "seq": 99, "fence": 2, "worker_id": "w-1"},
        {},
    ]
    assert _log_context.current() == {}


def test_tick_of_the_same_job_joins_and_another_job_gets_keys_of_its_own() -> None:
    with _log_context.tick(job_id="j-1", message_id="m-1"):
        with _log_context.tick(job_id="j-1", seq=1):  # the worker inside the handler's record
            _log_context.add(fence=4)
        joined = _log_context.current()
        with _log_context.tick(job_id="j-2"):  # the sweeper's next job
            other = _log_context.current()
        back = _log_context.current()

    assert joined == {"job_id": "j-1", "message_id": "m-1", "seq": 1, "fence": 4}  # kept for the record
    assert other == {"job_id": "j-2"}
    assert back == joined


def test_keys_are_ids_and_numbers_never_objects() -> None:
    with _log_context.tick(job_id="j-1", payload={"pw": "secret"}, attempt=2):
        assert _log_context.current() == {"job_id": "j-1", "attempt": 2}


def test_a_thread_started_in_this_context_sees_the_tick_and_keys_added_later() -> None:
    seen: list[dict[str, object]] = []
    go = threading.Event()

    def body() -> None:
        seen.append(_log_context.current())
        go.wait(5)
        seen.append(_log_context.current())

    async def tool() -> dict[str, object]:
        return _log_context.current()  # an asyncio task copies the thread's context

    with _log_context.tick(job_id="j-1"):
        bare = threading.Thread(target=lambda: seen.append(_log_context.current()))
        bare.start()
        bare.join()
        thread = threading.Thread(target=_log_context.in_this_context(body))
        thread.start()
        _log_context.add(step="charge")
        go.set()
        thread.join()
        on_loop = threading.Thread(
            target=_log_context.in_this_context(lambda: seen.append(asyncio.run(tool())))
        )
        on_loop.start()
        on_loop.join()

    assert seen[0] == {}  # a plain thread starts with nothing: the hand-over is what carries it
    assert seen[1]["job_id"] == "j-1" and seen[2] == {"job_id": "j-1", "step": "charge"}
    assert seen[3] == {"job_id": "j-1", "step": "charge"}


def test_in_this_context_hands_over_the_tick_only_not_the_callers_other_context() -> None:
    from aetheris._engine import guard

    seen: list[bool] = []
    with _log_context.tick(job_id="j-1"), guard.suspended():  # "inside a tool" on this thread
        thread = threading.Thread(
            target=_log_context.in_this_context(lambda: seen.append(guard._in_effect.get()))
        )
        thread.start()
        thread.join()

    assert seen == [False]  # a step body's thread must not start "inside a tool" (unguarded)


def test_dev_logs_write_text_with_the_tick_keys_for_library_and_powertools_lines() -> None:
    from aetheris.handlers import signals as signals_module
    from aetheris.handlers import sweeper as sweeper_module
    from aetheris.handlers import worker as worker_module
    from aetheris_infra import dev_logs

    library = logging.getLogger("aetheris")
    powertools = worker_module.logger
    handler = powertools.registered_handler
    before = (library.handlers[:], library.propagate, library.level, handler.stream)  # type: ignore[attr-defined]
    # use_readable_logs switches every handler module's logger: all of them are put back after,
    # or a later test that parses the signals handler's JSON lines finds text instead.
    others = [signals_module.logger, sweeper_module.logger]
    others_before = [
        (lg, lg.registered_handler.stream, lg.registered_formatter.json_serializer)  # type: ignore[attr-defined]
        for lg in others
    ]
    serializer = powertools.registered_formatter.json_serializer  # type: ignore[attr-defined]
    level = powertools.log_level
    engine_log = logging.getLogger("aetheris.worker")
    quiet = engine_log.level  # the suite quiets it (conftest)
    stream = io.StringIO()
    try:
        engine_log.setLevel(logging.NOTSET)
        dev_logs.use_readable_logs(stream)
        powertools.setLevel("INFO")
        with _log_context.tick(job_id="j-7", seq=2, worker_id="w-1", fence=3, attempt=1, job_type="refund"):
            logging.getLogger("aetheris.worker").warning("took slot %s over", 2)
            powertools.info("tick deferred", extra={"outcome": "deferred"})
    finally:
        library.handlers, library.propagate = before[0], before[1]
        library.setLevel(before[2])
        handler.stream = before[3]  # type: ignore[attr-defined]
        powertools.registered_formatter.json_serializer = serializer  # type: ignore[attr-defined]
        powertools.setLevel(level)
        engine_log.setLevel(quiet)
        for lg, stream_before, serializer_before in others_before:
            lg.registered_handler.stream = stream_before  # type: ignore[attr-defined]
            lg.registered_formatter.json_serializer = serializer_before  # type: ignore[attr-defined]
    engine, own = stream.getvalue().splitlines()

    assert "WARNING aetheris.worker: took slot 2 over" in engine
    assert engine.endswith("[job_id=j-7 job_type=refund seq=2 attempt=1 fence=3 worker_id=w-1]")
    assert "INFO aetheris-worker: tick deferred  [job_id=j-7 job_type=refund seq=2 attempt=1" in own
    assert "outcome=deferred" in own and not own.startswith("{")
