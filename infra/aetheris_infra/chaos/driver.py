"""The chaos driver: runs the stack in real processes, hurts it on purpose, and collects what is left.

``ChaosRun(seed, options).run()``:

1. starts the journaling moto server (``chaos.server``) in its own process; for each wave of jobs
   it creates the template's tables and queues afresh (stack ``aetheris-chaos-<wave>``: moto's
   Query and TransactWriteItems cost grows with the table) and lowers the step and signal queues'
   ``VisibilityTimeout`` from the template's 360 s to a few seconds (so a dead worker's messages
   come back within the run);
2. spawns ``workers`` worker processes (``chaos.worker``), each with its own seed and the next
   crash plan of the seeded round robin over the named crash points, and respawns each one that dies;
3. starts the planned jobs through ``Runtime.start`` (with an idempotency key, retried on errors as
   a client would), sends each job's signals early or late, several times with one ``signal_id``,
   ``ship`` sometimes before ``approve``;
4. while they run: SIGKILLs workers at random moments, pauses them with SIGSTOP past their lease and
   resumes them (zombies), sends duplicate and stale ticks, duplicates and reorders queued messages
   (a received message is copied and made visible again after a random delay), runs the sweeper
   handler every second — all seeded, all written to the fault log;
5. when every job of the wave is terminal (or at the wave's deadline) stops the workers and scans
   the wave's tables; after the last wave it reads the journal, the external ledger and the fault
   log (shared by all waves) into ``Observations`` for ``check``.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import logging
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from aetheris import JobFinished, Runtime, hosting
from aetheris._clock import IdSource
from aetheris._store.dynamo import from_dynamo
from aetheris._store.queue import Tick
from aetheris_infra.bootstrap import StackResources, bootstrap
from aetheris_infra.chaos import app as chaos_app
from aetheris_infra.chaos.check import Observations, SignalSend
from aetheris_infra.chaos.config import FAULTS_FILE, JOURNAL_FILE, FaultRates, RunConfig
from aetheris_infra.chaos.faults import FaultInjector
from aetheris_infra.chaos.jsonl import JsonLines
from aetheris_infra.chaos.plan import CrashSchedule, JobPlan, plan_jobs
from aetheris_infra.chaos.processes import ServerProcess, WorkerPool
from aetheris_infra.lambda_events import LocalLambdaContext, scheduled_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("aetheris.chaos")
REGION = "us-east-1"
STACK = "aetheris-chaos"
CLIENT_TRIES = 20  # a client (start, signal) tries this often before the run gives up on it


@dataclass(frozen=True)
class ChaosOptions:
    jobs: int = 200
    workers: int = 3
    # Jobs run in waves, each on fresh tables and queues: moto's Query and TransactWriteItems cost
    # grows with the table (a load test on moto measures moto), so a table stays small.
    wave_size: int = 50
    start_interval_s: float = 0.2  # between two starts within a wave
    max_in_flight: int = 40
    deadline_s: float = 240.0  # per wave
    kill_rate: float = 0.12  # SIGKILLs per second
    zombie_rate: float = 0.06  # SIGSTOP/SIGCONT pauses per second
    duplicate_tick_rate: float = 2.0  # per second
    meddle_rate: float = 1.0  # queue receives that duplicate and reorder messages, per second
    sweep_every_s: float = 3.0
    armed_share: float = 0.85  # share of spawned workers with an armed crash point
    rates: FaultRates = field(default_factory=FaultRates)
    run_dir: str | None = None
    progress: bool = False


class ChaosRun:
    def __init__(self, seed: int, options: ChaosOptions | None = None) -> None:
        self.seed = seed
        self.options = options or ChaosOptions()
        self.run_dir = Path(self.options.run_dir or tempfile.mkdtemp(prefix=f"aetheris-chaos-{seed}-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(f"driver-{seed}")
        self.faults = JsonLines(self.run_dir / FAULTS_FILE)
        crashes = CrashSchedule(seed, self.options.armed_share)
        self.pool = WorkerPool(self.options.workers, self.run_dir, crashes, self._random, self.faults)
        self.server = ServerProcess(self.run_dir, self.run_dir / JOURNAL_FILE)
        self.plans: list[JobPlan] = plan_jobs(seed, self.options.jobs)
        self.job_ids: dict[int, str] = {}
        self.terminal: set[int] = set()
        self.signals: dict[tuple[int, str], SignalSend] = {}
        self.swept = 0  # ticks the sweeper sent
        self.items: list[dict[str, Any]] = []  # the jobs tables of the finished waves
        self.inbox: list[dict[str, Any]] = []
        self.dlq = {"steps": 0, "signals": 0}
        self._wave_jobs: set[int] = set()

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Observations:
        started = time.monotonic()
        size = max(1, self.options.wave_size)
        try:
            self._start_server()
            for wave, first in enumerate(range(0, len(self.plans), size)):
                self._setup_wave(wave)
                self._drive(self.plans[first : first + size], wave)
                self.pool.stop()
                self._collect_wave()
            return self._observe(time.monotonic() - started)
        finally:
            self.pool.stop()
            self.server.stop()
            hosting.use(None)

    def _start_server(self) -> None:
        endpoint = self.server.start()
        self.endpoint = endpoint
        self.clients: dict[str, Any] = {"endpoint_url": endpoint, "region_name": REGION}
        self.dynamodb: DynamoDBClient = boto3.client("dynamodb", **self.clients)
        self.sqs: SQSClient = boto3.client("sqs", **self.clients)

    def _setup_wave(self, wave: int) -> None:
        clients, endpoint = self.clients, self.endpoint
        self.stack: StackResources = bootstrap(self.dynamodb, self.sqs, stack_name=f"{STACK}-{wave}")
        self.config = RunConfig(
            seed=self.seed,
            run_dir=str(self.run_dir),
            endpoint=endpoint,
            jobs_table=self.stack.jobs_table,
            inbox_table=self.stack.inbox_table,
            step_queue_url=self.stack.step_queue_url,
            signal_queue_url=self.stack.signal_queue_url,
            rates=self.options.rates,
        )
        for url in (self.stack.step_queue_url, self.stack.signal_queue_url):
            visibility = str(self.config.visibility_s)
            self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": visibility})
        self.config_path = self.run_dir / f"config-{wave}.json"
        self.config.save(self.config_path)
        # The driver's own runtime (starts, signals, the sweeper) goes through injected clients too.
        injector = FaultInjector(self.options.rates, self._random.getrandbits(32), self.faults, "driver")
        dynamodb, sqs = boto3.client("dynamodb", **clients), boto3.client("sqs", **clients)
        injector.attach(dynamodb)
        injector.attach(sqs)
        self.runtime = Runtime(
            chaos_app.app,
            self.config.settings(),
            dynamodb=dynamodb,
            sqs=sqs,
            ids=IdSource(self.seed),
            worker_id="driver",
        )
        hosting.use(self.runtime)
        self.pool.start(self.config_path)

    def _drive(self, plans: list[JobPlan], wave: int) -> None:
        options = self.options
        t0 = time.monotonic()
        due: list[tuple[float, int, int, str]] = []  # (time, tie, job index, signal name)
        next_start, next_sweep, next_poll, next_report = 0, 0.0, 1.0, 5.0
        last = last_start = -options.start_interval_s
        wave_jobs = self._wave_jobs = {plan.index for plan in plans}
        while True:
            now = time.monotonic() - t0
            dt, last = now - last, now
            in_flight = len((wave_jobs & self.job_ids.keys()) - self.terminal)
            if (
                next_start < len(plans)
                and now - last_start >= options.start_interval_s
                and in_flight < options.max_in_flight
            ):
                self._start(plans[next_start], now, due)
                next_start += 1
                last_start = now
            while due and due[0][0] <= now:
                _, _, index, name = heapq.heappop(due)
                self._send_signal(index, name)
            self.pool.reap()
            self.pool.resume_due()
            self._chaos(dt)
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + options.sweep_every_s
            if now >= next_poll:
                self._poll_terminal()
                next_poll = now + 1.0
                if next_start == len(plans) and wave_jobs <= self.terminal:
                    return
            if options.progress and now >= next_report:
                self._progress(wave, now)
                next_report = now + 5.0
            if now > options.deadline_s:
                log.error("wave %d deadline: %d jobs not terminal", wave, len(wave_jobs - self.terminal))
                return
            time.sleep(0.02)

    # -- jobs and signals ------------------------------------------------------------------------

    def _start(self, plan: JobPlan, now: float, due: list[tuple[float, int, int, str]]) -> None:
        for attempt in range(CLIENT_TRIES):
            try:
                started = self.runtime.start(
                    chaos_app.JOB_TYPE, plan.order.model_dump(), idempotency_key=plan.idempotency_key
                )
                break
            except (ClientError, BotoCoreError):  # an injected error that outlasted the retries
                time.sleep(0.05 * (attempt + 1))
        else:
            log.error("could not start job %d", plan.index)
            return
        self.job_ids[plan.index] = started.job_id
        for signal_plan in plan.signals:
            self.signals[(plan.index, signal_plan.name)] = SignalSend(
                plan.index,
                started.job_id,
                signal_plan.name,
                signal_plan.signal_id,
                signal_plan.payload,
                signal_plan.early,
            )
            if signal_plan.early:
                self._fault("early_signal", job=plan.index, signal=signal_plan.name)
            for copy in range(signal_plan.copies):
                at = now + signal_plan.delay_s + copy * signal_plan.copy_gap_s
                heapq.heappush(due, (at, self._random.getrandbits(32), plan.index, signal_plan.name))

    def _send_signal(self, index: int, name: str) -> None:
        send = self.signals[(index, name)]
        if send.sends:
            self._fault("duplicate_signal", job=index, signal=name)
        send.sends += 1
        for attempt in range(CLIENT_TRIES):
            try:
                self.runtime.send_signal(send.job_id, name, send.payload, signal_id=send.signal_id)
            except JobFinished:
                send.refused += 1
                return
            except (ClientError, BotoCoreError):
                time.sleep(0.05 * (attempt + 1))
                continue
            send.accepted = True
            return
        log.error("could not send signal %s to job %d", name, index)

    def _poll_terminal(self) -> None:
        open_jobs = [
            (i, j) for i, j in self.job_ids.items() if i in self._wave_jobs and i not in self.terminal
        ]
        for chunk in range(0, len(open_jobs), 100):
            batch = dict(open_jobs[chunk : chunk + 100])
            by_id = {job_id: index for index, job_id in batch.items()}
            keys = [{"pk": {"S": job_id}, "sk": {"S": "EW#JOB"}} for job_id in batch.values()]
            request: dict[str, Any] = {self.stack.jobs_table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for raw in answer["Responses"].get(self.stack.jobs_table, []):
                    item = from_dynamo(raw) or {}
                    if item.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                        self.terminal.add(by_id[str(item["pk"])])
                request = dict(answer.get("UnprocessedKeys") or {})

    def _sweep(self) -> None:
        from aetheris.handlers import sweeper

        level = sweeper.logger.log_level
        sweeper.logger.setLevel(logging.ERROR)  # its "ticked stalled jobs" lines: the run's normal
        try:
            # Its metric lines (EMF) and "no metrics" warnings are not the run's to print.
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                answer = sweeper.handler(scheduled_event(datetime.now(UTC)), LocalLambdaContext())
            self.swept += len(answer.get("ticked", []))
        except (ClientError, BotoCoreError) as error:  # the next scheduled run tries again
            log.info("sweeper run failed: %s", error)
        finally:
            sweeper.logger.setLevel(level)

    # -- chaos -----------------------------------------------------------------------------------

    def _chaos(self, dt: float) -> None:
        options, rng = self.options, self._random
        if rng.random() < options.kill_rate * dt:
            self.pool.kill()
        if rng.random() < options.zombie_rate * dt:
            self.pool.pause(self.config.lease_s)
        if rng.random() < options.duplicate_tick_rate * dt:
            self._duplicate_tick()
        if rng.random() < options.meddle_rate * dt:
            self._meddle()

    def _duplicate_tick(self) -> None:
        candidates = [i for i in self.job_ids if i in self._wave_jobs and i not in self.terminal]
        if not candidates:
            return
        index = self._random.choice(candidates)
        job_id = self.job_ids[index]
        item = from_dynamo(
            self.dynamodb.get_item(
                TableName=self.stack.jobs_table,
                Key={"pk": {"S": job_id}, "sk": {"S": "EW#JOB"}},
                ConsistentRead=True,
            ).get("Item")
        )
        if not item:
            return
        last = int(item.get("last_seq", 0))
        for kind, seq in (("stale_tick", last), ("duplicate_tick", last + 1)):
            body = Tick(job_id=job_id, seq=seq).model_dump_json()
            self.sqs.send_message(QueueUrl=self.stack.step_queue_url, MessageBody=body)
            self._fault(kind, job=index, seq=seq)

    def _meddle(self) -> None:
        """Receive a few messages; copy some (duplicates), show each again after a random delay."""
        url = self._random.choice((self.stack.step_queue_url, self.stack.signal_queue_url))
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=self._random.randint(1, 5)).get(
            "Messages", []
        )
        queue = url.rsplit("/", 1)[-1]
        for message in messages:
            if self._random.random() < 0.5:
                self.sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
                self._fault("queue_duplicate", queue=queue)
            delay = self._random.randint(0, 2)
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
                )
            except ClientError as gone:
                # Our receive outlived its visibility timeout: a worker has it now, or deleted it.
                if gone.response["Error"]["Code"] not in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
                    raise
                continue
            self._fault("queue_reorder", queue=queue, delay_s=delay)

    def _fault(self, kind: str, **detail: Any) -> None:
        self.faults.append({"kind": kind, "who": "driver", **detail})

    def _progress(self, wave: int, now: float) -> None:
        started, terminal, faults = len(self.job_ids), len(self.terminal), sum(1 for _ in self.faults)
        print(
            f"  wave {wave} t={now:4.0f}s: started {started}/{len(self.plans)}, terminal {terminal}, "
            f"workers spawned {self.pool.spawned}, faults {faults}",
            flush=True,
        )

    # -- what is left ----------------------------------------------------------------------------

    def _collect_wave(self) -> None:
        self.items += self._scan(self.stack.jobs_table)
        self.inbox += self._scan(self.stack.inbox_table)
        self.dlq["steps"] += self._depth(self.stack.step_dlq_url)
        self.dlq["signals"] += self._depth(self.stack.signal_dlq_url)

    def _observe(self, duration: float) -> Observations:
        observations = Observations(
            seed=self.seed,
            workers=self.options.workers,
            plans=[_with_job_id(p, self.job_ids.get(p.index, "")) for p in self.plans],
            job_ids=dict(self.job_ids),
            signals=sorted(self.signals.values(), key=lambda s: (s.job_index, s.name)),
            items=self.items,
            inbox=self.inbox,
            external=JsonLines(self.config.effects_path).read(),
            faults=self.faults.read(),
            journal=JsonLines(self.config.journal_path).read(),
            dlq=dict(self.dlq),
            processes_spawned=self.pool.spawned,
            duration_s=duration,
        )
        observations.save(self.run_dir / "observations.json")
        return observations

    def _scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**request)
            items.extend(i for i in (from_dynamo(raw) for raw in page.get("Items", [])) if i)
            if not page.get("LastEvaluatedKey"):
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        visible = attributes.get("ApproximateNumberOfMessages", "0")
        return int(visible) + int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0"))


def _with_job_id(plan: JobPlan, job_id: str) -> JobPlan:
    return JobPlan(plan.index, plan.order, plan.idempotency_key, plan.signals, job_id)
