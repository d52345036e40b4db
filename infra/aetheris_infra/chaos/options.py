"""``ChaosOptions``: how big a chaos run is, how hard it hurts the stack, and when it gives up."""

from __future__ import annotations

from dataclasses import dataclass, field

from aetheris_infra.chaos.config import FaultRates
from aetheris_infra.chaos.observations import Limits
from aetheris_infra.chaos.workload import Workload


@dataclass(frozen=True)
class ChaosOptions:
    jobs: int = 200
    workers: int = 3
    # Jobs run in waves, each on fresh tables and queues: moto's Query and TransactWriteItems cost
    # grows with the table (a load test on moto measures moto), so a table stays small.
    wave_size: int = 50
    start_interval_s: float = 0.2  # between two starts within a wave
    max_in_flight: int = 40
    # A wave ends once none of its jobs has committed anything for this long (they are stuck).
    # Generous: a lost tick is found again within a lease, a visibility timeout and the sweeper's
    # stall window (~15 s); and on a machine so busy that a due tick waits longer than a quarter
    # of it, the window grows to STALL_PACES times that wait (see progress.py).
    stall_window_s: float = 60.0
    max_stall_window_s: float = 600.0  # ... but never wider than this
    max_wave_s: float | None = None  # a ceiling for jobs that commit for ever (None: no ceiling)
    timer_margin_s: float = 10.0  # see Limits
    # Chaos follows progress too: actions per commit the journal shows, not per second (at a fixed
    # rate per second a busy machine's workers were killed while still starting up, and the
    # meddling outran the work). On an idle machine these give the per-second rates of before.
    kills_per_commit: float = 0.03  # SIGKILLs
    zombies_per_commit: float = 0.015  # SIGSTOP/SIGCONT pauses past the lease
    duplicate_ticks_per_commit: float = 0.4
    meddles_per_commit: float = 0.25  # queue receives that duplicate and reorder messages
    sweep_every_s: float = 3.0
    armed_share: float = 0.85  # share of spawned workers with an armed crash point
    rates: FaultRates = field(default_factory=FaultRates)
    workload: Workload = field(default_factory=Workload)
    each: tuple[str, ...] = ()  # one workload element per job, in turn (see plan_jobs)
    run_dir: str | None = None
    progress: bool = False

    @property
    def limits(self) -> Limits:
        return Limits(self.stall_window_s, self.sweep_every_s, self.timer_margin_s)
