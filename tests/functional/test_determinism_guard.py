"""The determinism guard: forbidden calls raise in orchestration code and are allowed in steps."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, JobStatus, StepContext
from aetheris.testing import LocalRuntime

FORBIDDEN: dict[str, Callable[[], Any]] = {
    "time.time": lambda: time.time(),
    "time.monotonic": lambda: time.monotonic(),
    "datetime.now": lambda: datetime.datetime.now(),
    "datetime.utcnow": lambda: datetime.datetime.utcnow(),
    "random.random": lambda: random.random(),
    "random.choice": lambda: random.choice([1, 2, 3]),
    "uuid.uuid4": lambda: uuid.uuid4(),
    "uuid.uuid1": lambda: uuid.uuid1(),
    "os.urandom": lambda: os.urandom(4),
    "socket.connect": lambda: socket.create_connection(("127.0.0.1", 9), timeout=0.2),
    "subprocess": lambda: subprocess.run(["true"], check=False),
}


def guard_app(call: Callable[[], Any], strict: bool = False) -> App:
    app = App("guard", strict_effects=strict)

    def in_step(sctx: StepContext) -> str:
        with contextlib.suppress(OSError):  # nothing listens on the port: reaching connect() counts
            call()
        return "allowed"

    @app.job("in_job")
    def in_job(ctx: JobContext, _: None) -> str:
        call()
        return "not reached"

    @app.job("in_step")
    def in_step_job(ctx: JobContext, _: None) -> str:
        return ctx.step(in_step)

    return app


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_guard_forbidden_call_in_orchestration_fails_the_job_with_advice(name: str) -> None:
    with LocalRuntime(guard_app(FORBIDDEN[name])) as local:
        view = local.wait(local.start("in_job", None))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris._engine.guard.DeterminismViolation"
    assert "differs on every replay" in view.error.message
    assert any(hint in view.error.message for hint in ("ctx.now()", "ctx.random()", "sctx.tool"))


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_guard_same_call_inside_a_step_is_allowed(name: str) -> None:
    with LocalRuntime(guard_app(FORBIDDEN[name])) as local:
        view = local.wait(local.start("in_step", None))

    assert view.status is JobStatus.COMPLETED and view.result == "allowed"


def test_guard_context_values_are_allowed_in_orchestration() -> None:
    app = App("values")

    @app.job("values")
    def values(ctx: JobContext, _: None) -> list[Any]:
        return [ctx.now().year, len(ctx.uuid()), 0 <= ctx.random() < 1]

    with LocalRuntime(app) as local:
        view = local.wait(local.start("values", None))

    assert view.status is JobStatus.COMPLETED and view.result == [2026, 36, True]


def test_step_network_call_outside_tools_is_reported_as_a_warning() -> None:
    with LocalRuntime(guard_app(FORBIDDEN["socket.connect"])) as local:
        job_id = local.start("in_step", None)
        local.wait(job_id)
        (commit,) = [e for e in local.events(job_id) if e.type is EventType.STEP_COMMITTED]

    (warning,) = commit.detail["warnings"]
    assert "socket.connect" in warning and "outside sctx.tool" in warning


def test_step_network_call_outside_tools_fails_in_strict_mode() -> None:
    with LocalRuntime(guard_app(FORBIDDEN["socket.connect"], strict=True)) as local:
        job_id = local.start("in_step", None)
        view = local.wait(job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.UntrackedEffect"
