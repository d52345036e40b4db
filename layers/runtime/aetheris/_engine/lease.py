"""Keeping the slot lease alive while a step runs, and checking it before touching the world.

A heartbeat thread renews the lease every third of its duration, measured on the runtime's clock
(so under ``LocalRuntime``'s fake clock it beats when the test moves time, exactly as leases expire
there). Before each effect the step checks how much lease is left; with less than the margin it
renews first, so a worker that was paused past its lease (a zombie) learns it lost the job before
it calls anything.

Rejected: renewing only before effects (a long tool call or a long pure computation would lose the
lease mid-step and be taken over while still running), and a beat on real time (under a fake clock
leases would expire between beats, and a test could not tell a missing heartbeat from a working one).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError

from aetheris import _log_context
from aetheris._clock import Clock, to_millis
from aetheris._engine.faults import NO_FAULTS, Faults
from aetheris._store.log import EventLog, SlotLease
from aetheris.errors import LeaseLost

log = _log_context.logger("aetheris.lease")


class LeaseKeeper:
    def __init__(
        self,
        log: EventLog,
        lease: SlotLease,
        clock: Clock,
        duration: timedelta,
        margin: timedelta,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.faults = faults
        self.log = log
        self.lease = lease
        self.clock = clock
        self.duration = duration
        self.margin = margin
        self.lost: LeaseLost | None = None
        self.beats = 0  # renewals made by the heartbeat (for tests and the trace)
        self._stopped = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def renew(self) -> None:
        with self._lock:
            if self.lost is not None:
                raise self.lost
            try:
                self.log.renew(self.lease, to_millis(self.clock.now() + self.duration))
            except LeaseLost as lost:
                self.lost = lost
                raise

    def ensure_valid(self) -> None:
        """Renew now unless more than the margin of lease is left; raises ``LeaseLost`` if it is gone."""
        if self.lost is not None:
            raise self.lost
        left = self.lease.lease_until_ms - to_millis(self.clock.now())
        if left < self.margin.total_seconds() * 1000:
            self.renew()

    def __enter__(self) -> LeaseKeeper:
        self._stopped = False
        beat = _log_context.in_this_context(self._beat)  # its lines carry the tick's keys
        self._thread = threading.Thread(target=beat, name=f"lease-{self.lease.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        interval = self.duration / 3
        next_beat = self.clock.now() + interval
        while True:
            self._wake.clear()  # cleared before looking, so a wake-up in between is not missed
            if self._stopped:
                return
            now = self.clock.now()
            if now < next_beat:
                self.clock.wait(self._wake, next_beat - now)
                continue
            next_beat = now + interval
            if self.faults.heartbeats_paused:
                continue
            try:
                self.renew()
                self.beats += 1
            except LeaseLost as lost:
                log.warning("lease lost while the step ran (another worker took the slot over): %s", lost)
                return  # the step finds out at its next effect or at commit
            except (BotoCoreError, ClientError) as error:
                # Tried again at the next beat; the lease may still hold.
                log.warning("lease renewal failed, tried again at the next beat: %s", type(error).__name__)
                continue
