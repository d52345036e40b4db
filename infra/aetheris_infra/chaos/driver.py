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
   a client would; an odd input that is refused is replaced by a plain one), sends each job's
   signals early or late, several times with one ``signal_id``, ``ship`` sometimes before
   ``approve``, and cancels the jobs the plan cancels (after a delay, or as the journal shows them
   parking);
4. while they run: SIGKILLs workers at random moments, pauses them with SIGSTOP past their lease and
   resumes them (zombies), sends duplicate and stale ticks, duplicates and reorders queued messages
   (a received message is copied and made visible again after a random delay) — at rates per
   commit the journal shows, so a slow machine gets as much chaos per job as a fast one — and runs
   the sweeper handler every few seconds; all seeded, all written to the fault log;
5. waits as long as the wave's jobs make progress (commits in the server's journal, tailed by
   ``Progress``): the wave ends when every job is terminal, its retention pass done and the signal
   queue drained — or when none of its open jobs committed anything for ``stall_window_s`` (they
   are stuck; a busy machine only makes them slow); ``max_wave_s``, off by default, is a ceiling
   for runaway jobs that commit for ever. Then it stops the workers, reads the results back and
   scans the wave's tables; after the last wave it reads the journal, the external ledger and the
   fault log (shared by all waves) into ``Observations`` for ``check``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import io
import json
import logging
import random
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from aetheris import Runtime, hosting
from aetheris._clock import IdSource
from aetheris_infra.bootstrap import StackResources, bootstrap
from aetheris_infra.chaos import app as chaos_app
from aetheris_infra.chaos.clients import CancelSend, call
from aetheris_infra.chaos.config import FAULTS_FILE, JOURNAL_FILE, RunConfig
from aetheris_infra.chaos.faults import FaultInjector
from aetheris_infra.chaos.jsonl import JsonLines
from aetheris_infra.chaos.observations import Observations, SignalSend
from aetheris_infra.chaos.options import ChaosOptions
from aetheris_infra.chaos.plan import CrashSchedule, JobPlan, plan_jobs
from aetheris_infra.chaos.processes import ServerProcess, WorkerPool
from aetheris_infra.chaos.progress import STALL_PACES, Progress
from aetheris_infra.chaos.stack import Meddler, StackReader
from aetheris_infra.chaos.workload import odd_value
from aetheris_infra.lambda_events import LocalLambdaContext, scheduled_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("aetheris.chaos")
REGION = "us-east-1"
STACK = "aetheris-chaos"
CANCEL = "$cancel"  # the driver's queue of timed actions holds signals by name, and cancels
PARKING = {"WaitStarted", "TimerStarted"}
DUE_MARKER = "due_shard"  # a finished job item still carrying it: its retention pass is not done


class ChaosRun:
    def __init__(self, seed: int, options: ChaosOptions | None = None) -> None:
        self.seed = seed
        self.options = options or ChaosOptions()
        self.run_dir = Path(self.options.run_dir or tempfile.mkdtemp(prefix=f"aetheris-chaos-{seed}-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(f"driver-{seed}")
        self.faults = JsonLines(self.run_dir / FAULTS_FILE, stamp=True)
        crashes = CrashSchedule(seed, self.options.armed_share)
        self.pool = WorkerPool(self.options.workers, self.run_dir, crashes, self._random, self.faults)
        self.server = ServerProcess(self.run_dir, self.run_dir / JOURNAL_FILE)
        self.plans: list[JobPlan] = plan_jobs(
            seed, self.options.jobs, self.options.workload, self.options.each
        )
        self.job_ids: dict[int, str] = {}
        self.index_of: dict[str, int] = {}
        self.terminal: set[int] = set()
        self.signals: dict[tuple[int, str], SignalSend] = {}  # (job index, signal id) → its sends
        self.active: dict[tuple[int, str], str] = {}  # (job index, name) → the signal id sent now
        self.cancels: list[CancelSend] = []
        self.input_probes: dict[int, dict[str, Any]] = {}
        self.results: dict[str, Any] = {}
        self.wave_ends: dict[str, float] = {}
        self.leftovers: dict[str, int] = {"signals": 0}
        self.dead_letters: dict[str, int] = {}  # job id → its messages on the dead-letter queues
        self.progress_log = Progress(self.run_dir / JOURNAL_FILE)
        self.stall_window_s = self.options.stall_window_s  # the widest window a wave used
        self.progress_log.observers.append(self._on_commit)
        self.swept = 0  # ticks the sweeper sent
        self.items: list[dict[str, Any]] = []  # the jobs tables of the finished waves
        self.inbox: list[dict[str, Any]] = []
        self.dlq = {"steps": 0, "signals": 0}
        self._wave_jobs: set[int] = set()
        self._mailed: set[str] = set()  # callback tokens the driver has answered
        self._effects_read = 0  # how far the external ledger was read for mailed links (bytes)

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
        self.reader = StackReader(self.dynamodb, self.sqs, self.stack)
        self.meddler = Meddler(self.reader, self._random, self._fault)
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
        self.due: list[tuple[float, int, int, str]] = []  # (time, tie, job index, signal name or CANCEL)
        next_start, next_sweep, next_poll, next_report = 0, 0.0, 1.0, 5.0
        last_start = -options.start_interval_s
        wave_jobs = self._wave_jobs = {plan.index for plan in plans}
        self._chaos_commits = self.progress_log.commits_seen
        self.last_move = time.time()  # the wave's last commit (or start): what the stall window runs from
        while True:
            now = time.monotonic() - t0
            in_flight = len((wave_jobs & self.job_ids.keys()) - self.terminal)
            if (
                next_start < len(plans)
                and now - last_start >= options.start_interval_s
                and in_flight < options.max_in_flight
            ):
                self._start(plans[next_start], now)
                next_start += 1
                last_start = now
                self.last_move = time.time()
            while self.due and self.due[0][0] <= now:
                _, _, index, name = heapq.heappop(self.due)
                if name == CANCEL:
                    self._cancel(index)
                else:
                    self._send_signal(index, name)
            self._answer_mailed_links()
            self.pool.reap()
            self.pool.resume_due()
            settling = next_start == len(plans) and wave_jobs <= self.terminal
            if not settling:
                self._chaos()
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + options.sweep_every_s
            if now >= next_poll:
                next_poll = now + 1.0
                if self._wave_done(next_start == len(plans)):
                    return
                if self._stalled(wave, now):
                    return
            if options.progress and now >= next_report:
                self._progress(wave, now)
                next_report = now + 5.0
            time.sleep(0.02)

    def _wave_done(self, all_started: bool) -> bool:
        """Every job of the wave terminal, its retention pass complete, no signal still queued."""
        self.progress_log.poll()
        self._poll_terminal()
        if not all_started or not self._wave_jobs <= self.terminal:
            return False
        return not self._retention_pending() and self.reader.queued(self.stack.signal_queue_url) == 0

    def _stalled(self, wave: int, now: float) -> bool:
        open_ids = [self.job_ids[i] for i in self._wave_jobs if i in self.job_ids]
        self.last_move = max(self.last_move, self.progress_log.last_move(open_ids))
        idle = time.time() - self.last_move
        paced = min(STALL_PACES * self.progress_log.pace(), self.options.max_stall_window_s)
        window = max(self.options.stall_window_s, paced)
        self.stall_window_s = max(self.stall_window_s, window)
        if idle >= window:
            stuck = len(self._wave_jobs - self.terminal)
            log.error(
                "wave %d stalled: nothing committed for %.0f s, %d jobs not terminal", wave, idle, stuck
            )
            return True
        ceiling = self.options.max_wave_s
        if ceiling is not None and now > ceiling:
            log.error("wave %d ran into its ceiling of %.0f s while its jobs still moved", wave, ceiling)
            return True
        return False

    # -- jobs, signals and cancels ---------------------------------------------------------------

    def _start(self, plan: JobPlan, now: float) -> None:
        order = plan.order
        answer = call(
            lambda: self.runtime.start(
                chaos_app.JOB_TYPE, order.model_dump(), idempotency_key=plan.idempotency_key
            )
        )
        if plan.input_probe is not None:
            self.input_probes[plan.index] = {
                "kind": plan.input_probe,
                "verdict": answer.verdict,
                "error": answer.error,
            }
            if not answer.accepted:  # refused (or failed): the job starts with a plain input
                order = order.model_copy(update={"note": None})
                answer = call(
                    lambda: self.runtime.start(
                        chaos_app.JOB_TYPE, order.model_dump(), idempotency_key=plan.idempotency_key
                    )
                )
        if not answer.accepted:
            log.error("could not start job %d: %s %s", plan.index, answer.verdict, answer.error)
            return
        job_id = answer.value.job_id
        self.job_ids[plan.index] = job_id
        self.index_of[job_id] = plan.index
        for signal_plan in plan.signals:
            payload = odd_value(signal_plan.probe) if signal_plan.probe else signal_plan.payload
            self._register_signal(
                SignalSend(
                    plan.index,
                    job_id,
                    signal_plan.name,
                    signal_plan.signal_id,
                    payload,
                    signal_plan.early,
                    probe=signal_plan.probe,
                )
            )
            if signal_plan.early:
                self._fault("early_signal", job=plan.index, signal=signal_plan.name)
            for copy in range(signal_plan.copies):
                at = now + signal_plan.delay_s + copy * signal_plan.copy_gap_s
                self._at(at, plan.index, signal_plan.name)
        if plan.cancel is not None and plan.cancel.by_driver and plan.cancel.moment != "parked":
            self._at(now + plan.cancel.delay_s, plan.index, CANCEL)

    def _at(self, at: float, index: int, what: str) -> None:
        heapq.heappush(self.due, (at, self._random.getrandbits(32), index, what))

    def _register_signal(self, send: SignalSend) -> None:
        self.signals[(send.job_index, send.signal_id)] = send
        self.active[(send.job_index, send.name)] = send.signal_id

    def _send_signal(self, index: int, name: str) -> None:
        send = self.signals[(index, self.active[(index, name)])]
        if send.sends:
            self._fault("duplicate_signal", job=index, signal=name)
        send.sends += 1
        answer = call(
            lambda: self.runtime.send_signal(send.job_id, name, send.payload, signal_id=send.signal_id)
        )
        if send.probe is not None and send.verdict is None:
            send.verdict, send.error = answer.verdict, answer.error
            if answer.verdict in ("refused", "server_error"):
                # Not accepted: the job still needs its memo, so a plain one goes under another id.
                plain = next(p for p in self._plan(index).signals if p.name == name)
                fallback = SignalSend(
                    index, send.job_id, name, f"{send.signal_id}-plain", plain.payload, False
                )
                self._register_signal(fallback)
                self._send_signal(index, name)
                return
        if answer.verdict == "finished":
            send.refused += 1
        elif answer.accepted:
            send.accepted = True
        else:
            log.error("could not send signal %s to job %d: %s %s", name, index, answer.verdict, answer.error)

    def _answer_mailed_links(self) -> None:
        """Answer every callback link a job mailed (the external ledger's ``mail.link`` lines carry
        the token), as a person clicking it would — half of them twice (the same answer again)."""
        path = Path(self.config.effects_path)
        if not path.exists() or path.stat().st_size <= self._effects_read:
            return
        with path.open("rb") as lines:
            lines.seek(self._effects_read)
            chunk = lines.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._effects_read += len(complete)
        for raw in complete.splitlines():
            line = json.loads(raw)
            token = line.get("arg")
            if line.get("effect") != "mail.link" or not line.get("ok") or token in self._mailed:
                continue
            self._mailed.add(str(token))
            index = self.index_of.get(str(line.get("job")))
            if index is not None:
                for _ in range(1 + self._random.getrandbits(1)):
                    self._answer_link(index, str(line["job"]), str(token))

    def _answer_link(self, index: int, job_id: str, token: str) -> None:
        from aetheris._callback_answers import answer
        from aetheris.callbacks import answer_envelope

        envelope = answer_envelope(chaos_app.LINK_ANSWER)
        outcome = call(lambda: answer(self.runtime, token, envelope)[1])
        signal_id = str(outcome.value) if outcome.accepted else None
        if signal_id is None:
            log.error("could not answer job %d's callback: %s %s", index, outcome.verdict, outcome.error)
            return
        send = self.signals.get((index, signal_id))
        if send is None:
            send = SignalSend(index, job_id, signal_id, signal_id, envelope, False)
            self._register_signal(send)
        else:
            self._fault("duplicate_signal", job=index, signal=signal_id)
        send.sends += 1
        send.accepted = True

    def _cancel(self, index: int) -> None:
        plan = self._plan(index)
        moment = plan.cancel.moment if plan.cancel else "unplanned"
        answer = call(lambda: self.runtime.cancel(self.job_ids[index]))
        self.cancels.append(
            CancelSend(index, self.job_ids[index], moment, time.time(), answer.verdict, answer.error)
        )
        self._fault("cancel", job=index, moment=moment, verdict=answer.verdict)

    def _on_commit(self, job_id: str, event_type: str) -> None:
        """A commit seen in the journal: cancel a job planned to be cancelled as it parks."""
        index = self.index_of.get(job_id)
        if index is None or event_type not in PARKING:
            return
        plan = self._plan(index)
        parked = plan.cancel is not None and plan.cancel.moment == "parked"
        if parked and not any(c.job_index == index for c in self.cancels):
            self._cancel(index)

    def _plan(self, index: int) -> JobPlan:
        return self.plans[index]

    def _poll_terminal(self) -> None:
        open_ids = [j for i, j in self.job_ids.items() if i in self._wave_jobs and i not in self.terminal]
        for item in self.reader.job_items(open_ids):
            if item.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                self.terminal.add(self.index_of[str(item["pk"])])

    def _retention_pending(self) -> bool:
        """A finished job of the wave whose items are not all given their TTL yet (its marker is on)."""
        ids = [self.job_ids[i] for i in self._wave_jobs if i in self.job_ids]
        return any(DUE_MARKER in item or "expires_at" not in item for item in self.reader.job_items(ids))

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

    def _chaos(self) -> None:
        options, rng = self.options, self._random
        commits = self.progress_log.commits_seen
        new, self._chaos_commits = commits - self._chaos_commits, commits
        if not new:
            return
        for _ in range(_draws(rng, options.kills_per_commit * new)):
            self.pool.kill()
        for _ in range(_draws(rng, options.zombies_per_commit * new)):
            self.pool.pause(self.config.lease_s)
        for _ in range(_draws(rng, options.duplicate_ticks_per_commit * new)):
            candidates = [i for i in self.job_ids if i in self._wave_jobs and i not in self.terminal]
            if candidates:
                index = rng.choice(candidates)
                self.meddler.duplicate_tick(index, self.job_ids[index])
        for _ in range(_draws(rng, options.meddles_per_commit * new)):
            self.meddler.meddle()

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
        self.progress_log.poll()
        ended = time.time()
        # The results as a client reads them back (offloaded values resolved, the engine's own
        # encoding of odd values undone), through clients without injected faults.
        reader = Runtime(chaos_app.app, self.config.settings(), dynamodb=self.dynamodb, sqs=self.sqs)
        for index in sorted(self._wave_jobs & self.job_ids.keys()):
            job_id = self.job_ids[index]
            self.wave_ends[job_id] = ended
            view = reader.get(job_id)
            if view is not None and view.status.value == "COMPLETED":
                self.results[job_id] = view.result
        self.items += self.reader.scan(self.stack.jobs_table)
        self.inbox += self.reader.scan(self.stack.inbox_table)
        for url in (self.stack.step_dlq_url, self.stack.signal_dlq_url):
            for job_id, count in self.reader.dead_letters(url).items():
                self.dead_letters[job_id] = self.dead_letters.get(job_id, 0) + count
        self.dlq["steps"] += self.reader.queued(self.stack.step_dlq_url, delayed=False)
        self.dlq["signals"] += self.reader.queued(self.stack.signal_dlq_url, delayed=False)
        self.leftovers["signals"] += self.reader.queued(self.stack.signal_queue_url)

    def _observe(self, duration: float) -> Observations:
        external = JsonLines(self.config.effects_path).read()
        observations = Observations(
            seed=self.seed,
            workers=self.options.workers,
            plans=[_with_job_id(p, self.job_ids.get(p.index, "")) for p in self.plans],
            job_ids=dict(self.job_ids),
            signals=sorted(self.signals.values(), key=lambda s: (s.job_index, s.name, s.signal_id)),
            items=self.items,
            inbox=self.inbox,
            external=[line for line in external if "key" in line],
            faults=self.faults.read(),
            journal=JsonLines(self.config.journal_path).read(),
            dlq=dict(self.dlq),
            processes_spawned=self.pool.spawned,
            duration_s=duration,
            cancels=list(self.cancels),
            cancel_asks=[line for line in external if "cancel" in line],
            results=dict(self.results),
            input_probes=dict(self.input_probes),
            progress=self.progress_log.snapshot(),
            wave_ends=dict(self.wave_ends),
            leftovers=dict(self.leftovers),
            limits=dataclasses.replace(self.options.limits, stall_window_s=self.stall_window_s),
            process_names=dict(self.pool.names),
            dead_letters=dict(self.dead_letters),
        )
        observations.save(self.run_dir / "observations.json")
        return observations


def _draws(rng: random.Random, expected: float) -> int:
    """How many actions happen when ``expected`` are due: its whole part, and one more by chance."""
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


def _with_job_id(plan: JobPlan, job_id: str) -> JobPlan:
    return dataclasses.replace(plan, job_id=job_id)
