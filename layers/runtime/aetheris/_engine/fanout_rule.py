"""What a fan-out is (as its ``FanOutStarted`` records it) and when it is done.

The rule is decided from the branches' own slots (``_store/branches.py``); everyone who looks —
a branch that ended, the job's join tick — computes the same answer from the same items. The join
waits for every *started* branch to settle, so whatever a branch committed is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aetheris._store.branches import Branches
from aetheris.fanout import Completion, CompletionReason


@dataclass(frozen=True)
class FanOutSpec:
    name: str
    names: tuple[str, ...]  # each branch's name (for ctx.map: the function's, once per item)
    max_concurrency: int | None
    completion: Completion | None

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def initial(self) -> int:
        """How many branches the fan-out starts itself; each branch that ends starts one more."""
        limit = self.max_concurrency or self.count
        return min(limit, self.count)

    def detail(self) -> dict[str, Any]:
        return {
            "fan_out": self.name,
            "count": self.count,
            "names": list(self.names),
            "max_concurrency": self.max_concurrency,
            "completion": self.completion.model_dump(exclude_none=True) if self.completion else None,
        }

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> FanOutSpec:
        completion = detail.get("completion")
        return cls(
            name=str(detail.get("fan_out", "")),
            names=tuple(str(n) for n in detail.get("names", [])),
            max_concurrency=detail.get("max_concurrency"),
            completion=Completion.model_validate(completion) if completion is not None else None,
        )


def decide(spec: FanOutSpec, branches: Branches, cancelled: bool) -> CompletionReason | None:
    """Why the fan-out is over as of ``branches``; ``None``: branches must still run."""
    if cancelled:
        return CompletionReason.CANCELLED
    lanes = [branches.lane(b) for b in range(spec.count)]
    succeeded = sum(1 for lane in lanes if lane.succeeded)
    failed = sum(1 for lane in lanes if lane.failed)
    settled = sum(1 for lane in lanes if lane.settled)
    rule = spec.completion
    if rule is None:
        if failed:
            return CompletionReason.FAILED
        return CompletionReason.ALL_COMPLETED if succeeded == spec.count else None
    if rule.tolerated_failure_count is not None and failed > rule.tolerated_failure_count:
        return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
    percentage = rule.tolerated_failure_percentage
    if percentage is not None and failed * 100 > percentage * spec.count:
        return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
    if rule.min_successful is not None:
        if succeeded >= rule.min_successful:
            return CompletionReason.MIN_SUCCESSFUL_REACHED
        if succeeded + (spec.count - settled) < rule.min_successful:
            return CompletionReason.FAILURE_TOLERANCE_EXCEEDED  # it can no longer be reached
    return CompletionReason.ALL_COMPLETED if settled == spec.count else None


def started_settled(spec: FanOutSpec, branches: Branches) -> tuple[bool, int]:
    """``(every started branch has settled, how many have)``."""
    started = [b for b in range(spec.count) if branches.started(b, spec.initial)]
    settled = sum(1 for b in started if branches.lane(b).settled)
    return settled == len(started), settled


def join_reason(spec: FanOutSpec, branches: Branches, cancelled: bool) -> CompletionReason | None:
    """The reason the job may join now: decided, and no started branch still running."""
    reason = decide(spec, branches, cancelled)
    if reason is None:
        return None
    done, _ = started_settled(spec, branches)
    return reason if done else None
