"""What a chaos run leaves behind for the checker: ``Observations`` (and the driver's sends in it).

Everything the checker reads is here: the plan, what the driver sent and what it was answered, the
tables as scanned at the end of each wave, the server's write journal, the external ledger of real
tool calls (and the cancels the jobs' own tools asked for), the fault log, the results as the
runtime reads them back, and each job's progress as the journal showed it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aetheris_infra.chaos.clients import CancelSend
from aetheris_infra.chaos.plan import JobPlan


@dataclass
class SignalSend:
    """One planned signal (one ``signal_id``) and what became of the driver's sends of it."""

    job_index: int
    job_id: str
    name: str
    signal_id: str
    payload: Any
    early: bool
    sends: int = 0
    accepted: bool = False  # at least one send was answered with the signal id (the API's 202)
    refused: int = 0  # sends refused because the job had ended (JobFinished)
    # An odd payload tried first (``SignalPlan.probe``): its kind and how the first send ended.
    probe: str | None = None
    verdict: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Limits:
    """The bounds the checker holds a run to (stated, and printed with a failure)."""

    stall_window_s: float = 60.0  # a job with no commit for this long is stuck, not slow
    sweep_every_s: float = 3.0
    # A timer fires at most one sweep period plus this margin plus the run's pace late (see
    # check_hygiene): the margin covers a due tick that went down with a killed worker (found again
    # after its lease and the queue's visibility timeout), the pace a machine busy with other work.
    timer_margin_s: float = 10.0


@dataclass
class Observations:
    seed: int
    workers: int
    plans: list[JobPlan]
    job_ids: dict[int, str]  # plan index → job id, for the jobs that were started
    signals: list[SignalSend]
    items: list[dict[str, Any]]  # the jobs table at the end
    inbox: list[dict[str, Any]]  # the inbox table at the end
    external: list[dict[str, Any]]  # the external ledger: real tool calls
    faults: list[dict[str, Any]]  # the fault log
    journal: list[dict[str, Any]]  # the server's write journal
    dlq: dict[str, int] = field(default_factory=dict)
    processes_spawned: int = 0
    duration_s: float = 0.0
    cancels: list[CancelSend] = field(default_factory=list)  # asked for by the driver
    cancel_asks: list[dict[str, Any]] = field(default_factory=list)  # asked for by the jobs' tools
    results: dict[str, Any] = field(default_factory=dict)  # job id → result, as Runtime.get reads it
    input_probes: dict[int, dict[str, Any]] = field(default_factory=dict)  # index → kind, verdict, error
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id → JobProgress fields
    wave_ends: dict[str, float] = field(default_factory=dict)  # job id → when its wave was collected
    leftovers: dict[str, int] = field(default_factory=dict)  # messages left on queues at the end
    process_names: dict[int, str] = field(default_factory=dict)  # worker pid → its worker id
    dead_letters: dict[str, int] = field(default_factory=dict)  # job id → its dead-lettered messages
    limits: Limits = field(default_factory=Limits)

    def save(self, path: str | Path) -> None:
        """Everything the checker read, as one JSON document (kept with a failed run's files)."""
        data = asdict(self)
        data["plans"] = [{**asdict(plan), "order": plan.order.model_dump()} for plan in self.plans]
        Path(path).write_text(json.dumps(_printable(data), default=str), encoding="utf-8")


def load_observations(path: str | Path) -> Observations:
    """Observations as ``save`` wrote them (values JSON cannot hold come back as their summaries)."""
    from aetheris_infra.chaos.app import ChaosOrder
    from aetheris_infra.chaos.plan import CancelPlan, SignalPlan

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    plans = [
        JobPlan(
            index=p["index"],
            order=ChaosOrder.model_validate(p["order"]),
            idempotency_key=p["idempotency_key"],
            signals=tuple(SignalPlan(**s) for s in p["signals"]),
            job_id=p["job_id"],
            cancel=CancelPlan(**p["cancel"]) if p.get("cancel") else None,
            input_probe=p.get("input_probe"),
        )
        for p in data.pop("plans")
    ]
    return Observations(
        **{
            **data,
            "plans": plans,
            "job_ids": {int(k): v for k, v in data["job_ids"].items()},
            "signals": [SignalSend(**s) for s in data["signals"]],
            "cancels": [CancelSend(**c) for c in data.get("cancels", [])],
            "input_probes": {int(k): v for k, v in data.get("input_probes", {}).items()},
            "process_names": {int(k): v for k, v in data.get("process_names", {}).items()},
            "limits": Limits(**data.get("limits", {})),
        }
    )


def _printable(value: Any, depth: int = 0) -> Any:
    """``value`` with what JSON cannot write (huge integers, very deep nesting) summarised."""
    if depth > 400:
        return "<nested deeper>"
    if isinstance(value, bool | str | None):
        return value
    if isinstance(value, int):
        return (
            value if abs(value) < 10**1000 else f"<an integer of about {value.bit_length() * 3 // 10} digits>"
        )
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _printable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v, depth + 1) for v in value]
    binary = getattr(value, "value", value)  # boto3's Binary (a log segment's data): its str is bytes
    if isinstance(binary, bytes | bytearray):
        return f"<{len(binary)} bytes>"
    return str(value)
