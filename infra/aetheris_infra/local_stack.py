"""``LocalStack``: the whole Aetheris stack in one process, on the real clock — what ``aetheris dev`` runs.

It starts a ``SerialMotoServer`` on loopback (DynamoDB's atomic conditional writes), creates the
tables and queues of ``template.yaml``, and drives the handlers SAM deploys with real event shapes:
N step workers that poll the step queue through ``SqsEventSource`` (each with its own ``Runtime``
and worker id), a signal poller, a sweeper ticker that sends the scheduled event every few seconds,
and the HTTP API behind the API Gateway v2 bridge on ``127.0.0.1``. Time is real: SQS delays,
visibility timeouts and leases run out as they do on AWS. ``aetheris.testing.LocalRuntime`` is the
fake-clock sibling for tests that must skip time.

Every handler runs with ``hosting.bound`` to a runtime built here, so nothing is read from (or
written to) the process environment and the process-wide runtime stays untouched. Each worker
thread imports the worker handler module afresh, as each Lambda execution environment does: the
module keeps per-invocation state (Powertools' ``BatchProcessor``) that concurrent threads must not
share. Powertools' metric lines (EMF on stdout) are switched off while the stack runs unless
``metrics=True`` (and the values Powertools still collects are dropped after each invocation, or it
would print every hundredth anyway); Powertools keeps them in one process-wide set, so with
``metrics=True`` and several handlers running at once a flushed line may carry another handler's
counts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aetheris import App, Runtime, Settings, hosting
from aetheris._local.bootstrap import StackResources, bootstrap
from aetheris._local.lambda_events import LocalLambdaContext, scheduled_event
from aetheris._local.moto_server import SerialMotoServer
from aetheris._local.sqs_source import SqsEventSource
from aetheris_infra.http_bridge import BridgeServer, serve

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["DEFAULT_APP", "FUNCTIONS_DIR", "LocalStack", "load_app"]

DEFAULT_APP: Final = "agents.support:app"
FUNCTIONS_DIR: Final = Path(__file__).resolve().parents[2] / "functions"
REGION: Final = "us-east-1"
_METRICS_DISABLED: Final = "POWERTOOLS_METRICS_DISABLED"

Handler = Callable[[dict[str, Any], Any], Any]
logger = logging.getLogger("aetheris.local_stack")


def load_app(path: str) -> App:
    """Import the ``App`` at ``"module:attribute"``, finding modules in the working directory and in
    the repository's ``functions/`` (where Lambda finds the example agents), as ``aetheris dev`` does."""
    for directory in (str(FUNCTIONS_DIR), os.getcwd()):
        if Path(directory).is_dir() and directory not in sys.path:
            sys.path.append(directory)
    return hosting.load_app(path)


class LocalStack:
    """The embedded stack: ``start()``/``stop()`` or ``with``; ``api_url`` is where the HTTP API listens."""

    def __init__(
        self,
        app: App | str = DEFAULT_APP,
        *,
        workers: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
        stack_name: str = "aetheris-local",
        lease: timedelta = timedelta(seconds=60),
        sweep_every: timedelta = timedelta(seconds=5),
        idle_backoff: tuple[timedelta, timedelta] = (timedelta(milliseconds=20), timedelta(milliseconds=500)),
        metrics: bool = False,
        api_token: str | None = None,
    ) -> None:
        """``idle_backoff`` is the first and the longest pause of a poller that found its queue empty
        (doubling in between); ``sweep_every`` is the sweeper schedule's period. With ``api_token``
        the HTTP API answers only requests with ``Authorization: Bearer <api_token>`` (401 otherwise)."""
        if workers < 1:
            raise ValueError(f"a local stack needs at least one worker, not {workers}")
        self._app = app
        self.workers = workers
        self._host, self._port = host, port
        self._stack_name = stack_name
        self._lease = lease
        self._sweep_every = sweep_every
        self._idle_backoff = idle_backoff
        self._metrics = metrics
        self._api_token = api_token
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Queue URL → one event per poller of it, set when this stack sends to that queue.
        self._wakers: dict[str, list[threading.Event]] = {}
        self._moto: SerialMotoServer | None = None
        self._bridge: BridgeServer | None = None
        self._metrics_env: str | None = None
        self.resources: StackResources | None = None
        self.runtimes: list[Runtime] = []  # the step workers' runtimes, one per thread

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Bring everything up; the API answers as soon as this returns. Undone if any part fails."""
        if self._moto is not None:
            raise RuntimeError("this LocalStack is already running")
        app = load_app(self._app) if isinstance(self._app, str) else self._app
        self._stopping.clear()
        if not self._metrics:
            self._metrics_env = os.environ.get(_METRICS_DISABLED)
            os.environ[_METRICS_DISABLED] = "true"
        try:
            self._moto = SerialMotoServer().start()
            dynamodb, sqs, s3 = self._clients(self._moto.url)
            # The resources are made over HTTP (queue URLs that other processes can use); this
            # process's handlers then reach the same backends in-process.
            self.resources = bootstrap(dynamodb, sqs, stack_name=self._stack_name, s3=s3)
            dynamodb, sqs = self._in_process_clients(self._moto)
            self._wake_on_send(sqs)
            settings = Settings(
                payload_bucket=self.resources.payload_bucket,
                jobs_table=self.resources.jobs_table,
                inbox_table=self.resources.inbox_table,
                step_queue_url=self.resources.step_queue_url,
                signal_queue_url=self.resources.signal_queue_url,
                step_dlq_url=self.resources.step_dlq_url,
                signal_dlq_url=self.resources.signal_dlq_url,
                endpoint_url=self._moto.url,
                region=REGION,
                lease=self._lease,
            )

            from aetheris.handlers.api import handler as api_handler
            from aetheris.handlers.signals import handler as signals_handler
            from aetheris.handlers.sweeper import handler as sweeper_handler
            from aetheris.handlers.sweeper import metrics

            # Powertools shares one metric set between all its Metrics objects: dropping it drops all.
            drop_metrics = None if self._metrics else metrics.metric_set.clear

            def runtime(worker_id: str) -> Runtime:
                return Runtime(app, settings, dynamodb=dynamodb, sqs=sqs, s3=s3, worker_id=worker_id)

            def _bind(rt: Runtime, handler: Handler) -> Handler:
                return bind(rt, handler, drop_metrics)

            self.runtimes = [runtime(f"local-worker-{n}") for n in range(1, self.workers + 1)]
            for rt in self.runtimes:
                handler = _fresh_handler("aetheris.handlers.worker")
                self._poll(sqs, self.resources.step_queue_url, _bind(rt, handler), rt.worker_id)
            self._poll(
                sqs,
                self.resources.signal_queue_url,
                _bind(runtime("local-signals"), signals_handler),
                "local-signals",
            )
            self._spawn("local-sweeper", self._sweep_loop, _bind(runtime("local-sweeper"), sweeper_handler))
            self._bridge = serve(
                _bind(runtime("local-api"), api_handler), self._host, self._port, token=self._api_token
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop polling (a batch being handled finishes first), close the API, wipe and stop moto."""
        self._stopping.set()
        for wakers in self._wakers.values():
            for waker in wakers:
                waker.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._wakers.clear()
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if not self._metrics:
            if self._metrics_env is None:
                os.environ.pop(_METRICS_DISABLED, None)
            else:
                os.environ[_METRICS_DISABLED] = self._metrics_env

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- where things are ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self._bridge is None:
            raise RuntimeError("start() the LocalStack first")
        return self._bridge.url

    @property
    def endpoint_url(self) -> str:
        """The moto server: the DynamoDB and SQS endpoint of this stack."""
        if self._moto is None:
            raise RuntimeError("start() the LocalStack first")
        return self._moto.url

    def environment(self) -> dict[str, str]:
        """What another process needs in its environment to host a handler on this stack."""
        if self.resources is None or self._moto is None:
            raise RuntimeError("start() the LocalStack first")
        return {
            "AETHERIS_JOBS_TABLE": self.resources.jobs_table,
            "AETHERIS_INBOX_TABLE": self.resources.inbox_table,
            "AETHERIS_STEP_QUEUE_URL": self.resources.step_queue_url,
            "AETHERIS_SIGNAL_QUEUE_URL": self.resources.signal_queue_url,
            "AETHERIS_STEP_DLQ_URL": self.resources.step_dlq_url,
            "AETHERIS_SIGNAL_DLQ_URL": self.resources.signal_dlq_url,
            "AETHERIS_PAYLOAD_BUCKET": self.resources.payload_bucket,
            "AETHERIS_ENDPOINT_URL": self._moto.url,
            "AETHERIS_REGION": REGION,
            "AETHERIS_APP": self._app if isinstance(self._app, str) else "",
            "AETHERIS_API": self.api_url,
        }

    # -- the pollers --------------------------------------------------------------------------

    def _clients(self, endpoint: str) -> tuple[DynamoDBClient, SQSClient, S3Client]:
        # moto takes any credentials: fixed ones, so `aetheris dev` needs no AWS setup at all.
        options: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **options)
        return boto3.client("dynamodb", **options), boto3.client("sqs", **options), s3

    def _in_process_clients(self, moto: SerialMotoServer) -> tuple[DynamoDBClient, SQSClient]:
        """DynamoDB and SQS clients of the same moto backends, without HTTP (see
        ``SerialMotoServer.serve_in_process``). S3 stays on the server: presigned URLs handed to
        users must point at it."""
        options: dict[str, Any] = {
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        dynamodb = moto.serve_in_process(boto3.client("dynamodb", **options))
        sqs = moto.serve_in_process(boto3.client("sqs", **options))
        return dynamodb, sqs

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _wake_on_send(self, sqs: SQSClient) -> None:
        """Every message this stack sends (a tick, a signal from the API) wakes the pollers of its
        queue at once. The serial moto server cannot hold a long poll (it would block every other
        request), so without this a poller that found its queue empty sleeps up to the longest
        idle pause before it sees the next message. Delayed ticks (``DelaySeconds``) and messages
        sent by other processes are still found by the idle polling."""

        def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["aetheris_queue_url"] = params.get("QueueUrl")

        def wake(context: dict[str, Any], parsed: dict[str, Any], **_: Any) -> None:
            if "Error" in parsed:
                return
            for waker in self._wakers.get(str(context.get("aetheris_queue_url")), ()):
                waker.set()

        for operation in ("SendMessage", "SendMessageBatch"):
            sqs.meta.events.register(f"before-parameter-build.sqs.{operation}", remember)
            sqs.meta.events.register(f"after-call.sqs.{operation}", wake)

    def _poll(self, sqs: SQSClient, queue_url: str, handler: Handler, name: str) -> None:
        source = SqsEventSource(sqs, queue_url, handler, region=REGION)
        waker = threading.Event()
        self._wakers.setdefault(queue_url, []).append(waker)
        self._spawn(name, self._poll_loop, source, waker)

    def _poll_loop(self, source: SqsEventSource, waker: threading.Event) -> None:
        """The event source mapping: receive, invoke, delete what was acked; while idle, back off —
        unless this stack sends to the queue, which wakes the poller at once."""
        shortest, longest = (pause.total_seconds() for pause in self._idle_backoff)
        pause = shortest
        while not self._stopping.is_set():
            waker.clear()  # a send from now on wakes the wait below, even one racing this receive
            try:
                result = source.poll_once(wait_seconds=0)  # the serial moto server must never block
            except (BotoCoreError, ClientError) as error:  # the queue is unreachable: try again later
                logger.warning("polling %s failed: %s", source.queue_url, error)
                result = None
            if result is not None and result.crashed is not None:
                logger.error("the handler failed; the batch stays on the queue", exc_info=result.crashed)
            if result is not None and result.received:
                source.in_flight.clear()  # visibility timeouts return them, on the real clock
                pause = shortest
                continue
            if waker.wait(pause):
                pause = shortest
                continue
            pause = min(longest, pause * 2)

    def _sweep_loop(self, handler: Handler) -> None:
        """The sweeper's EventBridge schedule."""
        while not self._stopping.wait(self._sweep_every.total_seconds()):
            try:
                handler(
                    scheduled_event(datetime.now(UTC)), LocalLambdaContext(function_name="aetheris-sweeper")
                )
            except (BotoCoreError, ClientError) as error:
                logger.warning("the sweeper failed: %s", error)


def bind(runtime: Runtime, handler: Handler, after: Callable[[], None] | None = None) -> Handler:
    """``handler`` as invoked on this stack: with ``runtime`` as its runtime, on whatever thread, and
    ``after()`` called once it returns."""

    def invoke(event: dict[str, Any], context: Any) -> Any:
        try:
            with hosting.bound(runtime):
                return handler(event, context)
        finally:
            if after is not None:
                after()

    return invoke


def _fresh_handler(module_name: str) -> Handler:
    """``handler`` of a fresh, private import of the module: one Lambda execution environment."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot find the handler module {module_name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Handler = module.handler
    return handler
