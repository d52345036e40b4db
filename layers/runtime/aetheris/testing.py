"""``LocalRuntime``: the embedded stack in-process, for users' tests and ours.

Real DynamoDB and SQS APIs (moto in-process by default, or any endpoint), tables and queues made
from ``template.yaml``'s definitions (shipped in the package: ``aetheris._local``, which needs the
``local`` extra for moto), and local workers that receive SQS batches and call the same worker
handler SAM deploys, with real Lambda event shapes and partial-batch-failure semantics. Time is a
``FakeClock``: leases, retries and timers move only when the test (or ``wait``) moves it.

``crash_at(point)`` makes the next worker to reach ``point`` die like a killed process: nothing is
acknowledged or released. ``run_until_idle`` then lets the lease and the message's visibility
timeout run out (on the fake clock) so another worker takes the job over — as on AWS.

SQS ``DelaySeconds`` counts real seconds, so ticks sent with a delay are held here until the fake
clock reaches their due time, then sent to the queue (``advance`` or ``wait`` gets them there).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from pydantic_core import to_json

from aetheris import hosting
from aetheris._clock import FakeClock, IdSource
from aetheris._engine.faults import CrashPoint, Faults, SimulatedCrash
from aetheris._engine.replayer import ReplayReport, replay_events
from aetheris._store.payloads import is_reference
from aetheris._store.queue import StepQueue, Tick
from aetheris.app import App
from aetheris.budget import Budget
from aetheris.config import Settings
from aetheris.events import Event, EventType
from aetheris.history import JobHistory
from aetheris.runtime import JobView, Runtime, s3_client
from aetheris.trace import Trace, load_trace


@dataclass
class _Held:
    due: float
    tick: Tick


class ClockedQueue(StepQueue):
    """The step queue, with delays measured on the fake clock instead of SQS's real one."""

    def __init__(self, inner: StepQueue, clock: FakeClock) -> None:
        super().__init__(inner.client, inner.url)
        self.clock = clock
        self.held: list[_Held] = []
        self._lock = threading.Lock()

    def send(self, tick: Tick, delay: timedelta = timedelta(0)) -> None:
        if delay <= timedelta(0):
            super().send(tick)
            return
        with self._lock:
            self.held.append(_Held((self.clock.now() + delay).timestamp(), tick))

    def flush_due(self) -> int:
        now = self.clock.now().timestamp()
        with self._lock:
            due = [h for h in self.held if h.due <= now]
            self.held = [h for h in self.held if h.due > now]
        for held in due:
            super().send(held.tick)
        return len(due)

    def next_due_in(self) -> timedelta | None:
        with self._lock:
            if not self.held:
                return None
            return timedelta(seconds=max(0.0, min(h.due for h in self.held) - self.clock.now().timestamp()))


class LocalRuntime:
    def __init__(
        self,
        app: App,
        *,
        workers: int = 2,
        lease: timedelta = timedelta(seconds=60),
        seed: int | None = 0,
        endpoint_url: str | None = None,
        server: bool = False,
        stack_name: str = "aetheris-test",
        overrides: Mapping[str, Any] | None = None,
        direct: bool | None = None,
    ) -> None:
        """``server=True`` runs moto as a loopback server serving one request at a time, so that
        workers on several threads race on DynamoDB's atomic conditional writes; the default is
        moto in-process (faster, for workers that take turns). ``endpoint_url`` uses a running
        endpoint instead (a shared moto server, LocalStack). ``overrides`` are ``Settings`` fields
        set on top of the stack's (``{"payload_bucket": None}`` turns the S3 offload off).
        ``direct`` (default: on unless ``AETHERIS_MOTO_DIRECT=0``) lets the in-process moto answer
        DynamoDB and SQS calls without the HTTP layer (``aetheris._local.moto_direct``: same
        answers; a call with a hook on a wire-level botocore event still goes over the wire)."""
        self.app = app
        self.clock = FakeClock()
        self.faults = Faults()
        self.ids = IdSource(seed)
        self._workers = workers
        self._lease = lease
        self._endpoint_url = endpoint_url
        self._server = server
        self._stack_name = stack_name
        self._overrides = dict(overrides or {})
        self._direct = direct
        self._exit = ExitStack()
        self.crashes: list[SimulatedCrash] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntime:
        from aetheris._local.backends import LOCALSTACK_ACCOUNT_ID, chosen_backend, localstack_endpoint
        from aetheris._local.bootstrap import bootstrap
        from aetheris._local.sqs_source import SqsEventSource
        from aetheris.handlers.signals import handler as signals_handler
        from aetheris.handlers.worker import handler

        account_id = "123456789012"
        if self._endpoint_url is None and not self._server and chosen_backend() != "moto":
            if chosen_backend() == "localstack":
                # LocalStack keeps its state between runs: a stack of our own per runtime.
                self._endpoint_url, account_id = localstack_endpoint(), LOCALSTACK_ACCOUNT_ID
                self._stack_name = f"{self._stack_name}-{secrets.token_hex(4)}"
            else:
                self._server = True
        if self._server and self._endpoint_url is None:
            from aetheris._local.moto_server import SerialMotoServer

            self._endpoint_url = self._exit.enter_context(SerialMotoServer()).url
        elif self._endpoint_url is None:
            from moto import mock_aws

            from aetheris._local import moto_speedups

            moto_speedups.install()  # before the first request, not only once run_until_idle ran

            self._exit.enter_context(mock_aws())
        region = "us-east-1"
        clients: dict[str, Any] = {"region_name": region, "endpoint_url": self._endpoint_url}
        self.dynamodb = boto3.client("dynamodb", **clients)
        self.sqs = boto3.client("sqs", **clients)
        if self._endpoint_url is None:  # moto in this process: its handlers can answer directly
            from aetheris._local import moto_direct

            if moto_direct.enabled() if self._direct is None else self._direct:
                moto_direct.attach(self.dynamodb)
                moto_direct.attach(self.sqs)
        self.s3 = s3_client(self._endpoint_url, region)
        self.stack = bootstrap(
            self.dynamodb, self.sqs, stack_name=self._stack_name, account_id=account_id, s3=self.s3
        )
        fields: dict[str, Any] = {
            "jobs_table": self.stack.jobs_table,
            "inbox_table": self.stack.inbox_table,
            "step_queue_url": self.stack.step_queue_url,
            "signal_queue_url": self.stack.signal_queue_url,
            "step_dlq_url": self.stack.step_dlq_url,
            "signal_dlq_url": self.stack.signal_dlq_url,
            "payload_bucket": self.stack.payload_bucket,
            "lease": self._lease,
            "lease_margin": self._lease / 6,
        }
        self.settings = Settings(**(fields | self._overrides))
        self.runtimes = [self._runtime(f"local-worker-{i + 1}") for i in range(self._workers)]
        self.queue = ClockedQueue(self.runtimes[0].services.queue, self.clock)
        for rt in self.runtimes:
            rt.services.queue = self.queue

        def bind(rt: Runtime, lambda_handler: Any) -> Any:
            def invoke(event: dict[str, Any], context: Any) -> Any:
                with hosting.bound(rt):
                    return lambda_handler(event, context)

            return invoke

        self.sources = [
            SqsEventSource(self.sqs, self.stack.step_queue_url, bind(rt, handler), deaths=(SimulatedCrash,))
            for rt in self.runtimes
        ]
        self.sources.append(
            SqsEventSource(
                self.sqs,
                self.stack.signal_queue_url,
                bind(self.runtimes[-1], signals_handler),
                deaths=(SimulatedCrash,),
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        for rt in getattr(self, "runtimes", ()):
            rt.worker.sticky.close()  # parked job functions (_engine/sticky.py) end with the stack
        self._exit.close()

    def _runtime(self, worker_id: str) -> Runtime:
        return Runtime(
            self.app,
            self.settings,
            dynamodb=self.dynamodb,
            sqs=self.sqs,
            s3=self.s3,
            clock=self.clock,
            ids=self.ids,
            worker_id=worker_id,
            faults=self.faults,
        )

    # -- the user's view ----------------------------------------------------------------------

    def start(
        self,
        job_type: str,
        input: Any = None,
        idempotency_key: str | None = None,
        *,
        budget: Budget | None = None,
    ) -> str:
        """Start a job; ``budget`` replaces its job type's ``Budget`` for this job."""
        return self.runtimes[0].start(job_type, input, idempotency_key=idempotency_key, budget=budget).job_id

    def fork(self, job_id: str, at_seq: int, *, budget: Budget | None = None) -> str:
        """A new job whose log is ``job_id``'s up to ``at_seq``, run on today's code (``aetheris fork``)."""
        return self.runtimes[0].fork(job_id, at_seq, budget=budget).job_id

    def retry(self, job_id: str, *, budget: Budget | None = None) -> str:
        """A new job that runs the FAILED (or CANCELLED) job again from its failed operation."""
        return self.runtimes[0].retry(job_id, budget=budget).job_id

    def get(self, job_id: str) -> JobView:
        view = self.runtimes[0].get(job_id)
        if view is None:
            raise KeyError(f"no job {job_id}")
        return view

    def events(self, job_id: str) -> list[Event]:
        return self.runtimes[0].events(job_id)

    def replay(self, job_id: str) -> ReplayReport:
        """Replay the job's recorded log against the app's current code (no tool or clock is touched)."""
        return replay(self.app, self.export(job_id))

    def export(self, job_id: str) -> JobHistory:
        """The job's recorded history, as ``aetheris export`` writes it."""
        return self.runtimes[0].export(job_id)

    def signal(self, job_id: str, name: str, payload: Any = None, signal_id: str | None = None) -> str:
        """Send a signal as the API does: validated, on the signal queue, its id returned."""
        return self.runtimes[0].send_signal(job_id, name, payload, signal_id)

    def answer_callback(self, token: str, payload: Any = None, *, error: dict[str, str] | None = None) -> str:
        """Answer a callback as ``POST /callbacks/succeed`` (``error``: ``/callbacks/fail``) does:
        the answer's signal id, or ``aetheris.callbacks.CallbackRefused`` (nothing written)."""
        from aetheris._callback_answers import answer
        from aetheris.callbacks import answer_envelope

        return answer(self.runtimes[0], token, answer_envelope(payload, error))[1]

    def cancel(self, job_id: str) -> JobView:
        return self.runtimes[0].cancel(job_id)

    def trace(self, job_id: str) -> Trace:
        """Steps with attempts, workers, effects, signals, timers and compensations (as the API serves it)."""
        trace = load_trace(self.runtimes[0], job_id)
        if trace is None:
            raise KeyError(f"no job {job_id}")
        return trace

    def crash_at(self, point: CrashPoint, times: int = 1) -> None:
        self.faults.crash_at(point, times)

    def advance(self, duration: timedelta) -> None:
        """Move the fake clock; delayed ticks come due and the scheduled sweeper runs once."""
        self.clock.advance(duration)
        self.queue.flush_due()
        self.sweep()

    # -- driving ------------------------------------------------------------------------------

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver messages to the workers until no message is visible, in flight or due."""
        from aetheris._local import moto_speedups

        # Once per process: moto's work per request then grows with the request, not with the
        # table (same answers).
        moto_speedups.install()
        # Queues found empty since this process last sent to them (or made a message visible):
        # polling them again would only cost a receive. Kept only for the in-process moto, which
        # nothing outside this process can send to.
        quiet: set[str] | None = getattr(self, "_quiet_queues", None)  # (set on the first call)
        if quiet is None and self._endpoint_url is None:
            quiet = set()
            self._quiet_queues = quiet

            def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
                context["aetheris_queue_url"] = params.get("QueueUrl")

            def heard(context: dict[str, Any], **_: Any) -> None:
                quiet.discard(context.get("aetheris_queue_url", ""))

            for operation in ("SendMessage", "SendMessageBatch", "ChangeMessageVisibility"):
                self.sqs.meta.events.register(f"before-parameter-build.sqs.{operation}", remember)
                self.sqs.meta.events.register(f"after-call.sqs.{operation}", heard)
        if quiet is not None:
            quiet.clear()  # every call looks at every queue once
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.queue.flush_due()
            received = 0
            for source in self.sources:
                if quiet is not None and source.queue_url in quiet and not source.in_flight:
                    continue
                result = source.poll_once()
                received += result.received
                if quiet is not None and not result.received:
                    quiet.add(source.queue_url)
                if isinstance(result.crashed, SimulatedCrash):
                    self._after_death(result.crashed)
                elif result.failed or result.crashed is not None:
                    self._let_visibility_expire()
            if received == 0 and not self._in_flight():
                return
        raise TimeoutError(f"the local stack was still busy after {timeout} s")

    def wait(self, job_id: str, timeout: float = 30.0) -> JobView:
        """Run until the job is finished, skipping the fake clock ahead to each held tick's due time."""
        deadline = time.monotonic() + timeout
        while True:
            self.run_until_idle(timeout=max(0.1, deadline - time.monotonic()))
            view = self.get(job_id)
            if view.status.is_terminal:
                return view
            due = self.queue.next_due_in()
            if due is not None and time.monotonic() < deadline:
                self.advance(due)
                continue
            # Nothing is scheduled: let the sweeper's stall window pass, as its schedule would.
            self.clock.advance(self.settings.stall_after + timedelta(seconds=1))
            self.queue.flush_due()
            swept = self.sweep()
            # A job the sweeper gave a tick before (backing off) is on its way too.
            moving = swept["ticked"] or job_id in swept["stuck"] or job_id in swept["due"]
            if not moving or time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {view.status.value} and nothing is scheduled to move it")

    def sweep(self) -> dict[str, Any]:
        """Run the real sweeper handler once, as its EventBridge schedule would."""
        from aetheris._local.lambda_events import LocalLambdaContext, scheduled_event
        from aetheris.handlers.sweeper import handler

        with hosting.bound(self.runtimes[0]):
            answer: dict[str, Any] = handler(scheduled_event(self.clock.now()), LocalLambdaContext())
        return answer

    def _after_death(self, crash: SimulatedCrash) -> None:
        # The dead worker's lease and its messages' visibility time out before anyone retries.
        self.crashes.append(crash)
        self.clock.advance(self._lease + timedelta(seconds=1))
        self._let_visibility_expire()

    def _let_visibility_expire(self) -> None:
        for source in self.sources:
            source.release_in_flight()

    def _in_flight(self) -> bool:
        return any(source.in_flight for source in self.sources)


_NO_INPUT: Any = object()
History = JobHistory | Mapping[str, Any] | str | os.PathLike[str] | Sequence[Event | Mapping[str, Any]]


def replay(app: App, history: History, *, input: Any = _NO_INPUT) -> ReplayReport:
    """Replay a recorded job against ``app``'s current code: no tool, clock, network or store is touched.

    ``history`` is a ``JobHistory``, its dict, a path to a file written by ``aetheris export``, or
    a job's event list as ``LocalRuntime.events(job_id)`` returns it (``Event`` objects, or their
    JSON dicts as ``GET /jobs/{id}/events`` serves them). An event list's ``JobCreated`` event names
    the job's type, version and input; for a log recorded before ``JobCreated`` carried the input
    (or one whose input was offloaded to S3), pass it as ``input=`` (a value or a pydantic model, as
    given to ``start``); a history carries its own, so ``input=`` is refused.
    """
    if isinstance(history, JobHistory | Mapping | str | os.PathLike):
        if input is not _NO_INPUT:
            raise TypeError("input= is only for an event list: a history carries the job's input")
        recorded = history if isinstance(history, JobHistory) else JobHistory.load(_as_source(history))
        definition = app.get(recorded.job.job_type, recorded.job.version)
        return replay_events(definition, recorded.input_json, recorded.events)
    events = [event if isinstance(event, Event) else Event.model_validate(event) for event in history]
    # A continued job's events start with its run's ContinuedAsNew, which names the same things.
    starts = (EventType.JOB_CREATED, EventType.CONTINUED_AS_NEW)
    created = next((event for event in events if event.type in starts), None)
    if created is None:
        raise ValueError("the event list has no JobCreated event: pass a job's whole log (from seq 0)")
    if input is _NO_INPUT and isinstance(created.input, str) and not is_reference(created.input):
        # JobCreated records the input (jobs started before it did need input=)
        definition = app.get(str(created.detail["job_type"]), str(created.detail["version"]))
        return replay_events(definition, created.input, events)
    if input is _NO_INPUT:
        raise TypeError(
            f"replaying job {created.job_id} from its events needs the job's input: pass input=... "
            "(or replay local.export(job_id), which carries it)"
        )
    definition = app.get(str(created.detail["job_type"]), str(created.detail["version"]))
    return replay_events(definition, to_json(input).decode(), events)


def _as_source(history: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any] | Path:
    return dict(history) if isinstance(history, Mapping) else Path(history)
