"""The three systems ``peers.py`` runs side by side, behind one small interface.

Each runs the same jobs — ``steps`` effect-free steps; and step, wait for a signal, step — and
records, from inside each step's body, when it ran (``MARKS``), so per-step latency is measured the
same way everywhere: the time between one step's body and the next one's.

What each one is (say it with the figures):
- ``Ours``: ``aetheris.testing.LocalRuntime`` — our real handlers on real DynamoDB and SQS APIs,
  served by moto (an emulator) in-process; every step is a conditional write, a Query, an SQS send,
  receive and delete, as on AWS. Time is a fake clock; nothing waits for real time.
- ``Dbos``: DBOS Transact on SQLite (a file in a temporary folder): a library that checkpoints each
  step to a local database; no queue, no emulator.
- ``Ldf``: the Lambda durable functions testing runner (``DurableFunctionTestRunner``): the real
  SDK against an in-memory checkpoint service, waits skipped; no AWS API is emulated.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MARKS: list[float] = []
_lock = threading.Lock()


def mark() -> None:
    with _lock:
        MARKS.append(time.perf_counter())


def wait_for_mark(after: int, timeout: float = 30.0) -> float:
    """The first mark made after the ``after``-th, polling until ``timeout``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with _lock:
            if len(MARKS) > after:
                return MARKS[after]
        time.sleep(0.0005)
    raise TimeoutError("no step ran")


class Ours:
    name = "aetheris LocalRuntime (moto in-process)"

    def __enter__(self) -> Ours:
        from aetheris import App, JobContext, StepContext
        from aetheris.testing import LocalRuntime

        app = App("peers")

        def body(sctx: StepContext, i: int) -> int:
            mark()
            return i

        @app.job("steps")
        def steps(ctx: JobContext, n: int) -> int:
            return sum(ctx.step(body, i) for i in range(n))

        @app.job("wait")
        def wait(ctx: JobContext, n: int) -> int:
            ctx.step(body, 0)
            ctx.wait_for_signal("go")
            return ctx.step(body, 1)

        self.local = LocalRuntime(app, workers=1).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.local.__exit__(None, None, None)

    def run_job(self, steps: int) -> None:
        job = self.local.start("steps", steps)
        self.local.run_until_idle(timeout=600)
        assert self.local.get(job).status.value == "COMPLETED"

    def signal_resume(self) -> float:
        job = self.local.start("wait", 0)
        self.local.run_until_idle(timeout=600)
        seen = len(MARKS)
        started = time.perf_counter()
        self.local.signal(job, "go", {})
        self.local.run_until_idle(timeout=600)
        return wait_for_mark(seen) - started


class Dbos:
    name = "DBOS 3.4 on SQLite"

    def __enter__(self) -> Dbos:
        from dbos import DBOS

        self._dir = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(self._dir.name) / 'dbos.sqlite'}"
        DBOS(config={"name": "peers", "system_database_url": url, "run_admin_server": False})

        @DBOS.step()
        def body(i: int) -> int:
            mark()
            return i

        @DBOS.workflow()
        def steps(n: int) -> int:
            return sum(body(i) for i in range(n))

        @DBOS.workflow()
        def wait() -> int:
            body(0)
            DBOS.recv("go", timeout_seconds=60)
            return body(1)

        self._steps, self._wait, self._dbos = steps, wait, DBOS
        DBOS.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self._dbos.destroy()
        self._dir.cleanup()

    def run_job(self, steps: int) -> None:
        self._dbos.start_workflow(self._steps, steps).get_result()

    def signal_resume(self) -> float:
        from dbos import WorkflowStatusString

        seen = len(MARKS)
        handle = self._dbos.start_workflow(self._wait)
        wait_for_mark(seen)  # the first step ran; now it parks in recv
        deadline = time.perf_counter() + 30
        pending = WorkflowStatusString.PENDING.value
        while handle.get_status().status != pending and time.perf_counter() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)  # let it reach recv (DBOS has no "waiting" status to poll for)
        started = time.perf_counter()
        self._dbos.send(handle.workflow_id, "ok", "go")
        resumed = wait_for_mark(seen + 1) - started
        handle.get_result()
        return resumed


class Ldf:
    name = "Lambda durable functions testing runner 1.4 (SDK 3.0)"

    def __enter__(self) -> Ldf:
        from aws_durable_execution_sdk_python.context import DurableContext
        from aws_durable_execution_sdk_python.execution import durable_execution
        from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

        def body(i: int) -> Any:
            def run(_: Any) -> int:
                mark()
                return i

            return run

        @durable_execution  # type: ignore[misc]
        def handler(event: dict[str, Any], context: DurableContext) -> int:
            if event.get("wait"):
                context.step(body(0), name="first")
                context.create_callback(name="go").result()
                return int(context.step(body(1), name="after"))
            return sum(context.step(body(i), name=f"s{i}") for i in range(event["n"]))

        self.runner = DurableFunctionTestRunner(handler=handler, poll_interval=0.001)
        self._n = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.close()

    def run_job(self, steps: int) -> None:
        self._n += 1
        result = self.runner.run(
            input=json.dumps({"n": steps}), execution_timeout=600, execution_name=f"j{self._n}"
        )
        assert result.status.value == "SUCCEEDED", result.status

    def signal_resume(self) -> float:
        self._n += 1
        seen = len(MARKS)
        arn = self.runner.run_async(
            input=json.dumps({"wait": True}), execution_timeout=600, execution_name=f"w{self._n}"
        )
        callback = self.runner.wait_for_callback(arn, name="go", timeout=60)
        started = time.perf_counter()
        self.runner.send_callback_success(callback, b'"ok"')
        resumed = wait_for_mark(seen + 1) - started
        self.runner.wait_for_result(arn, timeout=60)
        return resumed


class Dev:
    """``aetheris dev``'s stack (``LocalStack``: moto server, real-clock pollers): signal → resume only."""

    name = "aetheris dev (LocalStack: moto server, real-clock pollers)"

    def __enter__(self) -> Dev:
        from aetheris import App, JobContext, StepContext
        from aetheris_infra.local_stack import LocalStack

        app = App("peers-dev")

        def body(sctx: StepContext, i: int) -> int:
            mark()
            return i

        @app.job("wait")
        def wait(ctx: JobContext, n: int) -> int:
            ctx.step(body, 0)
            ctx.wait_for_signal("go")
            return ctx.step(body, 1)

        self.stack = LocalStack(app, workers=2).start()
        self.runtime = self.stack.runtimes[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def signal_resume(self) -> float:
        seen = len(MARKS)
        job = self.runtime.start("wait", 0).job_id
        wait_for_mark(seen)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            view = self.runtime.get(job)
            if view is not None and view.status.value == "WAITING":
                break
            time.sleep(0.002)
        time.sleep(0.6)  # past the pollers' longest idle pause, as a human's signal would be
        started = time.perf_counter()
        self.runtime.send_signal(job, "go", {})
        return wait_for_mark(seen + 1) - started
