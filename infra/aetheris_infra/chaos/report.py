"""``ChaosReport``: the figures of one chaos run, the violations found, and how they print."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# Injected by the botocore hook, by the driver on processes, and by the driver on messages.
INFRA_FAULTS = (
    "dynamodb_throttle",
    "dynamodb_5xx",
    "dynamodb_lost_response",
    "sqs_throttle",
    "sqs_5xx",
    "sqs_lost_response",
)
PROCESS_FAULTS = ("crash_point", "sigkill", "zombie")
MESSAGE_FAULTS = (
    "duplicate_tick",
    "stale_tick",
    "queue_duplicate",
    "queue_reorder",
    "duplicate_signal",
    "early_signal",
    "cancel",
)


@dataclass
class ChaosReport:
    seed: int
    workers: int
    duration_s: float = 0.0
    # jobs
    jobs_planned: int = 0
    jobs_started: int = 0
    completed: int = 0
    failed_rejected: int = 0  # the approval said no: failed on purpose, compensated
    failed_outcome_unknown: int = 0  # an AT_MOST_ONCE call was cut off: failed visibly, compensated
    failed_swallowing: int = 0  # a bare except swallowed the suspension: failed, naming the except
    failed_identity: int = 0  # a reordered call refused by identity: failed, naming the tool
    wrong_outcome: int = 0
    lost: int = 0  # not terminal when the run ended
    stuck: int = 0  # ... and no commit for the stall window
    slow: int = 0  # ... but still committing
    # cancels
    cancels_sent: int = 0  # cancel requests accepted: by the driver, and by the jobs' own tools
    cancels_by_moment: dict[str, int] = field(default_factory=dict)
    cancels_landed: int = 0  # jobs whose item records a cancel request
    cancelled: int = 0  # ... that ended CANCELLED
    cancels_too_late: int = 0  # ... that had loaded their last operation before it, and ended anyway
    compensation_violations: int = 0
    # faults
    faults: dict[str, int] = field(default_factory=dict)
    surfaced_errors: int = 0  # injected bursts that outlasted the client's retries
    crash_points: dict[str, int] = field(default_factory=dict)
    processes_spawned: int = 0
    # effects, per the external ledger
    effect_keys: dict[str, int] = field(default_factory=dict)  # by semantics
    effect_calls: dict[str, int] = field(default_factory=dict)  # real, successful calls by semantics
    amo_duplicates: int = 0
    alo_repeated_keys: int = 0  # AT_LEAST_ONCE keys called more than once (allowed: same key)
    alo_repeats_explained: int = 0  # repeats after a recorded failure or a fault of the caller
    alo_repeats_unexplained: int = 0
    identity_mismatches: int = 0  # a call's result handed to a call with other arguments
    key_mismatches: int = 0
    result_mismatches: int = 0
    calls_without_claim: int = 0
    compensations_run: int = 0
    # signals
    signals_accepted: int = 0
    signals_consumed: int = 0
    signals_unneeded: int = 0
    signals_lost: int = 0
    signals_consumed_twice: int = 0
    signal_sends_refused: int = 0  # duplicates sent after the job ended: refused (JobFinished)
    # the log and the fence
    commits: int = 0
    stale_fence_commits: int = 0
    double_commits: int = 0
    fenced_out_writes: int = 0  # commits/records the store refused to a superseded claimant
    stale_ledger_records: int = 0
    slot_claims: int = 0
    max_claims_per_slot: int = 0
    log_violations: int = 0
    # odd values, timers, retention
    odd_values: dict[str, int] = field(default_factory=dict)  # "signal:deep:accepted" → sends
    timers_fired: int = 0
    timers_early: int = 0
    timers_late: int = 0
    timer_max_late_s: float = 0.0
    pace_s: float = 0.0  # the longest wait of a due tick: a step's commit → the next slot's claim
    retention_incomplete: int = 0
    ttl_on_live_jobs: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def faults_total(self) -> int:
        return sum(self.faults.values())

    @property
    def failed_as_designed(self) -> int:
        return (
            self.failed_rejected + self.failed_outcome_unknown + self.failed_swallowing + self.failed_identity
        )

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, message: str) -> None:
        self.violations.append(message)

    def targets(
        self, min_jobs: int, min_faults: int, all_crash_points: bool = True, min_cancels: int = 0
    ) -> list[str]:
        """What this run falls short of (empty: every target met)."""
        short = []
        if self.cancels_sent < min_cancels:
            short.append(f"{self.cancels_sent} cancels sent, target {min_cancels}")
        if self.jobs_started < min_jobs:
            short.append(f"{self.jobs_started} jobs started, target {min_jobs}")
        if self.faults_total < min_faults:
            short.append(f"{self.faults_total} faults injected, target {min_faults}")
        missing = [p for p, hits in self.crash_points.items() if hits == 0]
        if all_crash_points and missing:
            short.append(f"crash points never hit: {', '.join(missing)}")
        return short

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(faults_total=self.faults_total, failed_as_designed=self.failed_as_designed, ok=self.ok)
        return data

    def table(self) -> str:
        rows: list[tuple[str, str]] = [
            ("seed / workers / duration", f"{self.seed} / {self.workers} / {self.duration_s:.0f} s"),
            ("jobs started", f"{self.jobs_started} of {self.jobs_planned}"),
            ("  completed", str(self.completed)),
            (
                "  failed as designed",
                f"{self.failed_as_designed} ({self.failed_rejected} rejected, "
                f"{self.failed_outcome_unknown} AT_MOST_ONCE outcome unknown, "
                f"{self.failed_swallowing} swallowed suspension, {self.failed_identity} call identity)",
            ),
            ("  wrong outcome", str(self.wrong_outcome)),
            ("  lost (stuck / slow)", f"{self.lost} ({self.stuck} / {self.slow})"),
            ("cancels sent", f"{self.cancels_sent} ({_pairs(self.cancels_by_moment)})"),
            (
                "  landed / cancelled / too late",
                f"{self.cancels_landed} / {self.cancelled} / {self.cancels_too_late}",
            ),
            ("  compensation violations", str(self.compensation_violations)),
            ("faults injected", str(self.faults_total)),
        ]
        rows += [(f"  {kind}", str(count)) for kind, count in _ordered(self.faults)]
        rows += [
            ("  errors that outlasted client retries", str(self.surfaced_errors)),
            ("crash points hit", ", ".join(f"{p} {n}" for p, n in self.crash_points.items())),
            ("worker processes spawned", str(self.processes_spawned)),
            ("effect keys (ALO / AMO)", _pair(self.effect_keys)),
            ("real calls (ALO / AMO)", _pair(self.effect_calls)),
            ("  AT_MOST_ONCE keys called twice", str(self.amo_duplicates)),
            ("  AT_LEAST_ONCE keys called again", f"{self.alo_repeated_keys} (same key each time)"),
            (
                "  repeats explained / unexplained",
                f"{self.alo_repeats_explained} / {self.alo_repeats_unexplained}",
            ),
            ("  calls answered with another call's result", str(self.identity_mismatches)),
            ("  key / recorded-result mismatches", f"{self.key_mismatches} / {self.result_mismatches}"),
            ("  calls with no ledger claim", str(self.calls_without_claim)),
            ("  compensations run", str(self.compensations_run)),
            ("signals accepted / consumed", f"{self.signals_accepted} / {self.signals_consumed}"),
            (
                "  unneeded / lost / consumed twice",
                f"{self.signals_unneeded} / {self.signals_lost} / {self.signals_consumed_twice}",
            ),
            ("  late duplicates refused", str(self.signal_sends_refused)),
            ("commits (journal)", str(self.commits)),
            ("  by a stale fence", str(self.stale_fence_commits)),
            ("  twice into one slot", str(self.double_commits)),
            ("  stale writes refused by the fence", str(self.fenced_out_writes)),
            ("  stale ledger records", str(self.stale_ledger_records)),
            ("slot claims (max per slot)", f"{self.slot_claims} ({self.max_claims_per_slot})"),
            ("log invariant violations", str(self.log_violations)),
            ("odd values (kind: verdict)", _pairs(self.odd_values) or "-"),
            (
                "timers fired (early / late, max late)",
                f"{self.timers_fired} ({self.timers_early} / {self.timers_late}, "
                f"{self.timer_max_late_s:.1f} s; longest tick wait {self.pace_s:.1f} s)",
            ),
            (
                "retention incomplete / TTL on a live job",
                f"{self.retention_incomplete} / {self.ttl_on_live_jobs}",
            ),
            ("dead-letter queues", ", ".join(f"{q} {n}" for q, n in self.dlq.items()) or "-"),
            ("verdict", "PASS" if self.ok else f"FAIL ({len(self.violations)} violations)"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"! {v}" for v in self.violations[:25]]
        if len(self.violations) > 25:
            lines.append(f"! ... and {len(self.violations) - 25} more")
        return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


def _pair(by_semantics: dict[str, int]) -> str:
    return f"{by_semantics.get('AT_LEAST_ONCE', 0)} / {by_semantics.get('AT_MOST_ONCE', 0)}"


def _ordered(faults: dict[str, int]) -> list[tuple[str, int]]:
    known = [*INFRA_FAULTS, *PROCESS_FAULTS, *MESSAGE_FAULTS]
    counts = Counter(faults)
    return [(k, counts[k]) for k in known if counts[k]] + sorted(
        (k, n) for k, n in counts.items() if k not in known
    )
