"""What an invocation needs from the outside: stores, queues, payload bucket, clock, ids, settings,
fault points, telemetry."""

from __future__ import annotations

from dataclasses import dataclass, field

from aetheris._clock import Clock, IdSource
from aetheris._engine.faults import Faults
from aetheris._observability import Telemetry
from aetheris._store.inbox import Inbox
from aetheris._store.jobs import JobStore
from aetheris._store.ledger import EffectLedger
from aetheris._store.log import EventLog
from aetheris._store.payloads import Payloads
from aetheris._store.queue import SignalQueue, StepQueue
from aetheris._store.retention import Retention
from aetheris.config import Settings


@dataclass
class Services:
    jobs: JobStore
    log: EventLog
    ledger: EffectLedger
    queue: StepQueue
    inbox: Inbox
    signals: SignalQueue
    clock: Clock
    ids: IdSource
    settings: Settings
    retention: Retention
    payloads: Payloads
    faults: Faults = field(default_factory=Faults)
    # What the engine measured this tick (operations, effects, signals, job ends); the handler
    # publishes it as EMF once the batch is done.
    telemetry: Telemetry = field(default_factory=Telemetry)
