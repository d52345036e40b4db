"""``Runtime``: the runtime wired to its store, queue and clock — what handlers and tools call.

It starts jobs (idempotently), advances them one tick at a time (``handle_tick``) and reads them
back, big offloaded values resolved. Clients (DynamoDB, SQS and — with a payload bucket — S3) are
built from ``Settings`` unless given, so tests and the local stack can hand in their own (moto,
LocalStack) and a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict

from aetheris import _log_context, _serde
from aetheris._clock import Clock, IdSource, SystemClock, to_millis
from aetheris._engine.faults import Faults
from aetheris._engine.services import Services
from aetheris._engine.step_context import check_name
from aetheris._engine.sweeper import Sweeper, SweepReport
from aetheris._engine.worker import TickOutcome, Worker
from aetheris._fork import ForkPlan, copy_log, plan_fork, plan_retry
from aetheris._store import schema, watch
from aetheris._store.dynamo import ConditionFailed, Table, TransactionConflict
from aetheris._store.idempotency import IdempotencyKeys, KeyContended, retained
from aetheris._store.inbox import Inbox, InboxSignal, SignalIdConflict
from aetheris._store.jobs import JobSnapshot, JobStore
from aetheris._store.ledger import EffectLedger
from aetheris._store.log import EventLog
from aetheris._store.payloads import Payloads
from aetheris._store.queue import SignalMessage, SignalQueue, StepQueue, Tick
from aetheris._store.retention import Lifetime, Retention, pass_pending
from aetheris._tenancy import DEFAULT_TENANT, owns, scoped_key, tenant_of
from aetheris._values import storable_json
from aetheris.app import App
from aetheris.budget import Budget
from aetheris.callbacks import SIGNAL_PREFIX as CALLBACK_SIGNAL_PREFIX
from aetheris.config import Settings
from aetheris.errors import ErrorInfo, IdempotencyConflict, JobFinished, JobNotFound
from aetheris.events import Event, EventType, ForkedFrom, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from aetheris.history import JobHistory

# Starts with one key racing each other: each lost race means another start created the job.
_KEY_RACES = 3


def s3_client(endpoint_url: str | None, region: str | None) -> S3Client:
    """An S3 client; path-style addressing on a local endpoint (moto, LocalStack) has no DNS to need."""
    config = Config(s3={"addressing_style": "path"}) if endpoint_url else None
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class JobView(BaseModel):
    """A job as the job item shows it (a projection of the log)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    job_type: str
    version: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    result: Any = None
    error: ErrorInfo | None = None
    idempotency_key: str | None = None
    waiting_for: str | None = None
    cancel_requested_at: datetime | None = None
    last_seq: int | None = None
    parent_id: str | None = None  # set on a child job (``ctx.child``): the job that started it
    forked_from: ForkedFrom | None = None
    budget: Budget | None = None  # the per-start budget, if the job was started with one
    run: int = 1  # 1, then one more at each ctx.continue_as_new

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> JobView:
        return cls(
            job_id=item["job_id"],
            job_type=item["job_type"],
            version=item["version"],
            status=item["status"],
            created_at=item["created_at"],
            updated_at=item["updated_at"],
            result=_serde.load(item.get("result"), _serde.ANY_ADAPTER),
            error=ErrorInfo.model_validate_json(item["error"]) if item.get("error") else None,
            idempotency_key=item.get("idempotency_key"),
            waiting_for=item.get("waiting_for"),
            cancel_requested_at=item.get("cancel_requested_at"),
            last_seq=item.get("last_seq"),
            parent_id=item.get("parent_id"),
            forked_from=ForkedFrom.model_validate_json(item["forked_from"])
            if item.get("forked_from")
            else None,
            budget=Budget.model_validate_json(item["budget"]) if item.get("budget") else None,
            run=int(item.get("run", 1)),
        )


@dataclass(frozen=True)
class StartedJob:
    job_id: str
    created: bool
    status: JobStatus


class Runtime:
    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        dynamodb: DynamoDBClient | None = None,
        sqs: SQSClient | None = None,
        s3: S3Client | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        worker_id: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        endpoint, region = settings.endpoint_url, settings.region
        dynamodb = dynamodb or boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
        sqs = sqs or boto3.client("sqs", endpoint_url=endpoint, region_name=region)
        if s3 is None and settings.payload_bucket:
            s3 = s3_client(endpoint, region)
        table = Table(dynamodb, settings.jobs_table)
        inbox = Table(dynamodb, settings.inbox_table)
        ids = ids or IdSource()
        lifetime = Lifetime.of(settings)
        self.services = Services(
            jobs=JobStore(
                table,
                lifetime=lifetime,
                cache_bytes=settings.event_cache_bytes,
                segment_events=settings.log_segment_events,
            ),
            log=EventLog(table, lifetime),
            ledger=EffectLedger(table, lifetime),
            queue=StepQueue(sqs, settings.step_queue_url),
            inbox=Inbox(inbox, lifetime),
            signals=SignalQueue(sqs, settings.signal_queue_url),
            clock=clock or SystemClock(),
            ids=ids,
            settings=settings,
            retention=Retention(table, inbox, lifetime),
            payloads=Payloads.from_settings(settings, s3),
            faults=faults or Faults(),
        )
        self.worker = Worker(app, self.services, worker_id or f"worker-{ids.uuid()[:8]}")

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def start(
        self,
        job_type: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        version: str | None = None,
        tenant: str | None = None,
        budget: Budget | None = None,
    ) -> StartedJob:
        """Create a job (of ``tenant``, default ``DEFAULT_TENANT``) and send its first tick. The same
        idempotency key returns the same job within a tenant; other tenants' keys are theirs.

        ``budget`` replaces the job type's ``Budget`` for this job (stored with it, enforced the same
        way; see ``aetheris.budget``).

        A key names its job for as long as the job is retained; once its retention passed (or
        DynamoDB's TTL is part-way through deleting it) the key starts a fresh job under a new id
        (see ``_store/idempotency.py``).
        """
        definition = self.app.get(job_type, version)
        value = definition.input.validate_python(input)
        input_json = storable_json(value, "input", via=definition.input, limit=self.services.payloads.limit)
        tenant = tenant or DEFAULT_TENANT
        budget_json = None if budget is None else Budget.model_validate(budget).model_dump_json()
        if idempotency_key is None:
            job_id = self.services.ids.uuid()
            self._create(
                job_id, job_type, definition.version, input_json, None, tenant, budget_json=budget_json
            )
            return StartedJob(job_id, created=True, status=JobStatus.PENDING)
        keys = IdempotencyKeys(self.services.jobs.table, self.services.retention.lifetime)
        for _ in range(_KEY_RACES):
            # Keys are per tenant: another tenant's key never finds (or names) this tenant's job.
            slot = keys.slot(scoped_key(idempotency_key, tenant), self.services.clock.now())
            existing = slot.job
            if existing is None:
                try:
                    existing = self._create(
                        slot.job_id,
                        job_type,
                        definition.version,
                        input_json,
                        idempotency_key,
                        tenant,
                        slot.claim,
                        budget_json=budget_json,
                    )
                except TransactionConflict:
                    continue  # another start with this key moved first: look again
                if existing is None:
                    return StartedJob(slot.job_id, created=True, status=JobStatus.PENDING)
                if not retained(existing, self.services.clock.now()):
                    continue
            if not owns(existing, tenant):
                raise IdempotencyConflict(
                    idempotency_key, slot.job_id
                )  # a uuid5 collision: never, in practice
            return self._same_job(existing, job_type, input_json, idempotency_key)
        raise KeyContended(idempotency_key, _KEY_RACES)

    def _create(
        self,
        job_id: str,
        job_type: str,
        version: str,
        input_json: str,
        idempotency_key: str | None,
        tenant: str,
        claim: list[dict[str, Any]] | None = None,
        *,
        budget_json: str | None = None,
        forked_from: dict[str, Any] | None = None,
        first_seq: int = 1,
    ) -> dict[str, Any] | None:
        """Create the job and send its first tick; the existing job item if the id is taken."""
        # A big input goes to S3 before the job item references it (content-addressed: a repeat
        # writes the same object again).
        stored_input = self.services.payloads.offload(job_id, input_json)
        now, settings = self.services.clock.now(), self.settings
        attention = watch.attention(
            job_id, JobStatus.PENDING, now, settings.stall_after, settings.sweep_shards
        )
        existing = self.services.jobs.create(
            job_id,
            job_type,
            version,
            stored_input,
            now,
            idempotency_key,
            claim,
            attention,
            tenant,
            budget_json=budget_json,
            forked_from=forked_from,
            last_seq=first_seq - 1,
        )
        if existing is None:
            self.services.queue.send(Tick(job_id=job_id, seq=first_seq))
        return existing

    def fork(
        self,
        job_id: str,
        at_seq: int,
        *,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        budget: Budget | None = None,
    ) -> StartedJob:
        """Start a new job whose log is job ``job_id``'s up to ``at_seq`` (see ``aetheris._fork``)."""
        return self._fork(
            job_id, lambda snapshot: plan_fork(snapshot, at_seq), tenant, idempotency_key, budget
        )

    def retry(
        self,
        job_id: str,
        *,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        budget: Budget | None = None,
    ) -> StartedJob:
        """Start a new job that runs a FAILED or CANCELLED job again from its failed operation."""
        return self._fork(job_id, plan_retry, tenant, idempotency_key, budget)

    def _fork(
        self,
        job_id: str,
        plan_of: Callable[[JobSnapshot], ForkPlan],
        tenant: str | None,
        idempotency_key: str | None,
        budget: Budget | None,
    ) -> StartedJob:
        snapshot = self.services.jobs.load(job_id)
        if snapshot is None or not owns(snapshot.job, tenant):
            raise JobNotFound(job_id)  # another tenant's job is no job: ids do not leak
        plan = plan_of(snapshot)
        source = snapshot.job
        definition = self.app.get(str(source["job_type"]))  # the latest version: the code deployed now
        tenant = tenant or tenant_of(source)
        input_json = self.services.payloads.text(self.services.jobs.input_of(source)) or "null"
        budget_json = (
            source.get("budget") if budget is None else Budget.model_validate(budget).model_dump_json()
        )
        forked_from = plan.forked_from()
        if idempotency_key is None:
            new_id = self.services.ids.uuid()
            claim: list[dict[str, Any]] = []
        else:
            # Fork keys are a namespace of their own: a start's key never names a fork.
            slot = IdempotencyKeys(self.services.jobs.table).slot(
                scoped_key(f"fork:{idempotency_key}", tenant), self.services.clock.now()
            )
            if slot.job is not None:
                return self._same_fork(slot.job, forked_from, idempotency_key, tenant)
            new_id, claim = slot.job_id, slot.claim
        copy_log(self.services, plan, new_id)
        try:
            existing = self._create(
                new_id,
                definition.name,
                definition.version,
                input_json,
                idempotency_key,
                tenant,
                claim,
                budget_json=budget_json,
                forked_from=forked_from,
                first_seq=plan.through + 1,
            )
        except TransactionConflict:
            raise KeyContended(idempotency_key or new_id, 1) from None
        if existing is not None:
            return self._same_fork(existing, forked_from, idempotency_key or new_id, tenant)
        return StartedJob(new_id, created=True, status=JobStatus.PENDING)

    def _same_fork(
        self, existing: dict[str, Any], forked_from: dict[str, Any], key: str, tenant: str
    ) -> StartedJob:
        recorded = json.loads(existing.get("forked_from") or "{}")
        same = {k: recorded.get(k) for k in ("job_id", "seq", "via")} == {
            k: forked_from[k] for k in ("job_id", "seq", "via")
        }
        if not same or not owns(existing, tenant):
            raise IdempotencyConflict(key, str(existing["job_id"]))
        if existing["status"] == JobStatus.PENDING.value:  # its first tick may have been lost
            self.services.queue.send(
                Tick(job_id=str(existing["job_id"]), seq=int(existing.get("last_seq", 0)) + 1)
            )
        return StartedJob(str(existing["job_id"]), created=False, status=JobStatus(existing["status"]))

    def _same_job(self, existing: dict[str, Any], job_type: str, input_json: str, key: str) -> StartedJob:
        job_id = str(existing["job_id"])
        recorded = self.services.payloads.text(self.services.jobs.input_of(existing)) or "null"
        same_input = json.loads(recorded) == json.loads(input_json)
        if existing["job_type"] != job_type or not same_input:
            raise IdempotencyConflict(key, job_id)
        status = JobStatus(existing["status"])
        if status is JobStatus.PENDING:  # the first tick may have been lost after the create
            self.services.queue.send(Tick(job_id=job_id, seq=1))
        return StartedJob(job_id, created=False, status=status)

    def handle_tick(
        self, body: str, receive_count: int = 1, time_left: timedelta | None = None
    ) -> TickOutcome:
        """Advance the job named by a step-queue message body by one operation."""
        return self.worker.handle(Tick.model_validate_json(body), receive_count, time_left)

    def send_signal(
        self,
        job_id: str,
        name: str,
        payload: Any = None,
        signal_id: str | None = None,
        *,
        tenant: str | None = None,
    ) -> str:
        """Accept a signal for a live job (of ``tenant``, if given): in the inbox and on the signal
        queue before this returns.

        The payload must be storable (``UnstorableValue``, ``PayloadTooLarge``), and the signal id
        free or held by this very signal (``SignalIdConflict`` otherwise): a caller told the signal
        was accepted is never told so for a signal that ingest then cannot store.

        The message is sent first and the inbox written second, so every order of two senders and
        the ingest ends the same way: the inbox item decides which signal holds the id, each
        sender answers from what it finds there, and ingest drops a message whose id another
        signal holds (its sender was refused). A crash between the two leaves the message, which
        ingest stores; a crash before the send leaves nothing, and the caller got no answer.
        """
        check_name("signal", name)
        services = self.services
        payloads = services.payloads
        payload_json = storable_json(payload, "payload", limit=payloads.limit)
        item = services.jobs.get(job_id)
        if item is None or not owns(item, tenant):
            raise JobNotFound(job_id)
        if signal_id is not None and signal_id.startswith(CALLBACK_SIGNAL_PREFIX) and signal_id != name:
            # Reserved for callback answers (the id *is* the wait's signal name): a plain signal
            # holding it would block the wait's real answer.
            raise SignalIdConflict(job_id, signal_id, name, "a callback answer's (reserved)")
        if JobStatus(item["status"]).is_terminal:
            # A client retrying a signal the job already received gets the original answer.
            if signal_id is not None and services.inbox.has(job_id, signal_id, name):
                return signal_id
            raise JobFinished(job_id, item["status"])
        signal_id = signal_id or services.ids.uuid()
        sent_at = to_millis(services.clock.now())
        # A big payload goes to S3 first and the message carries its reference.
        stored = payloads.offload(job_id, payload_json)
        inline = stored == payload_json
        message = SignalMessage(
            job_id=job_id,
            name=name,
            signal_id=signal_id,
            payload=payload if inline else None,
            payload_ref=None if inline else stored,
            sent_at_ms=sent_at,
        )
        services.signals.send(message)
        services.inbox.store(
            InboxSignal(job_id, signal_id, name, stored, arrived_at_ms=sent_at, sent_at_ms=sent_at)
        )
        return signal_id

    def ingest_signal(self, body: str) -> str:
        """Signal queue → inbox (once per signal id) → wake the job if it waits for this signal.

        A redelivery after a crash finds the inbox item and still wakes the job: a duplicate tick
        is harmless, a lost one is not; the log consumes each signal exactly once. A message whose
        id another signal holds is dropped (``"conflict"``): its sender was answered 409.
        """
        message = SignalMessage.model_validate_json(body)
        services = self.services
        # The very text the sender checked and stored: the same dump of the same value.
        payload_json = message.payload_ref or storable_json(message.payload, "payload")
        try:
            stored = services.inbox.store(
                InboxSignal(
                    job_id=message.job_id,
                    signal_id=message.signal_id,
                    name=message.name,
                    payload_json=payload_json,
                    arrived_at_ms=to_millis(services.clock.now()),
                    sent_at_ms=message.sent_at_ms,
                )
            )
        except SignalIdConflict:
            return "conflict"
        services.faults.reach("after_inbox_write")
        job = services.jobs.get(message.job_id)
        _log_context.add(job_type=job.get("job_type") if job else None)
        if job is None or JobStatus(job["status"]).is_terminal:
            # Accepted while the job was live, landed after it ended (or expired): the signal was
            # stored with its provisional TTL, so it goes at most retention + horizon from now.
            return "unknown_job" if job is None else "job_finished"
        if pass_pending(job) and schema.DUE_INDEX_SK not in job:
            # A job from before provisional TTLs, parked off the attention index: the signal just
            # stored carries a TTL, so the sweeper must come to extend the job in time.
            look = watch.look_at(message.job_id, services.clock.now(), self.settings.sweep_shards)
            watch.refresh(services.jobs.table, message.job_id, look)
        if job["status"] == JobStatus.WAITING.value and job.get("waiting_for") == message.name:
            seq = int(job.get("last_seq", 0)) + 1
            _log_context.add(seq=seq)  # the slot of the tick that wakes it
            services.queue.send(Tick(job_id=message.job_id, seq=seq))
            return "woke"
        return "stored" if stored else "duplicate"

    def cancel(self, job_id: str, *, tenant: str | None = None) -> JobView:
        """Ask the job (of ``tenant``, if given) to stop: it is cancelled at its next operation (at
        once if parked)."""
        services = self.services
        item = services.jobs.get(job_id)
        if item is None or not owns(item, tenant):
            raise JobNotFound(job_id)
        if JobStatus(item["status"]).is_terminal:
            raise JobFinished(job_id, item["status"])
        if not item.get("cancel_requested_at"):
            try:
                now, settings = services.clock.now(), self.settings
                # A parked job is off the attention index: back on it until the cancel is done.
                look = watch.look_at(job_id, now + settings.stall_after, settings.sweep_shards)
                item = services.jobs.request_cancel(job_id, now, look) or item
            except ConditionFailed as lost:
                if lost.current is None:
                    raise JobNotFound(job_id) from None
                raise JobFinished(job_id, str(lost.current["status"])) from None
        services.queue.send(Tick(job_id=job_id, seq=int(item.get("last_seq", 0)) + 1))
        return JobView.from_item(item)

    def sweep(self) -> SweepReport:
        """One sweep: tick every job that should be moving and is not, and fire due timers."""
        return Sweeper(self.services).sweep()

    def get(self, job_id: str, *, tenant: str | None = None) -> JobView | None:
        item = self.services.jobs.get(job_id)
        if item is None or not owns(item, tenant):
            return None
        return JobView.from_item(self.services.payloads.resolve(item))

    def events(self, job_id: str) -> list[Event]:
        """The job's log with every recorded value resolved (offloaded values fetched from S3)."""
        snapshot = self.services.jobs.load(job_id)
        resolve = self.services.payloads.resolve
        return [Event.from_item(resolve(item)) for item in snapshot.events] if snapshot else []

    def export(self, job_id: str) -> JobHistory:
        """The job's history (job, input, every event) as a portable document."""
        from aetheris.history import JobHistory

        item = self.services.jobs.get(job_id)
        if item is None:
            raise JobNotFound(job_id)
        item = self.services.payloads.resolve(item)
        events = self.events(job_id)
        # A continued job's history is its current run's: its input is the state it started with.
        start = events[0] if events and events[0].type is EventType.CONTINUED_AS_NEW else None
        stored = start.input if start is not None else self.services.jobs.input_of(item)
        input_text = self.services.payloads.text(stored) or "null"
        return JobHistory(job=JobView.from_item(item), input=json.loads(input_text), events=events)

    def effects(self, job_id: str) -> list[dict[str, Any]]:
        """The job's effect-ledger entries (claims, results, failures), for traces and audits."""
        return [self.services.payloads.resolve(item) for item in self.services.ledger.list(job_id)]
