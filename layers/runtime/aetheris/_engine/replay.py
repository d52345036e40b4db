"""The replay cursor: walks the job function's operations against the log and detects divergence.

Each operation the code asks for is checked against what the log recorded at the same position
(kind and name); so is every deterministic value. A mismatch raises ``NondeterminismError`` naming
the position, the recorded operation and the requested one — the job is then failed, never
continued on a path its log does not describe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aetheris._engine.history import History, OpRecord
from aetheris.errors import NondeterminismError
from aetheris.events import OpKind


class Replay:
    def __init__(self, job_id: str, history: History) -> None:
        self.job_id = job_id
        self.history = history
        self.position = history.base  # 0, or where this run of a continued job starts
        self._value_index = 0
        self.pending_values: list[dict[str, Any]] = []
        self.diverged: NondeterminismError | None = None

    @property
    def is_replaying(self) -> bool:
        return self.position in self.history.ops

    def begin(self, kind: OpKind, name: str) -> OpRecord:
        """Enter the next operation: its record from the log, or a fresh one if it never ran."""
        index = self.position
        record = self.history.ops.get(index)
        if record is not None:
            if record.kind != kind or record.name != name:
                self._diverge(index, f"{record.kind.value} {record.name!r}", f"{kind.value} {name!r}")
            recorded = len(record.events[0].values) if record.events else 0  # no copy: every step asks
            if self._value_index != recorded:
                self._diverge(
                    index,
                    f"{recorded} deterministic values before {kind.value} {name!r}",
                    f"{self._value_index}",
                )
        else:
            record = OpRecord(index, kind, name, new_values=self.pending_values)
            self.pending_values = []
        self.position += 1
        self._value_index = 0
        return record

    def value(self, kind: str, make: Callable[[], Any]) -> Any:
        """A deterministic value: replayed from the log if recorded, else made now and kept for commit."""
        record = self.history.ops.get(self.position)
        index = self._value_index
        self._value_index += 1
        if record is None:
            made = make()
            self.pending_values.append({"kind": kind, "value": made})
            return made
        recorded = record.recorded_values
        if index >= len(recorded):
            self._diverge(
                self.position,
                f"{len(recorded)} deterministic values before {record.kind.value} {record.name!r}",
                f"another ctx.{kind}()",
            )
        entry = recorded[index]
        if not isinstance(entry, dict) or entry.get("kind") != kind:
            self._diverge(
                self.position,
                f"ctx.{entry.get('kind') if isinstance(entry, dict) else entry}()",
                f"ctx.{kind}()",
            )
        return entry["value"]  # type: ignore[index]

    def _diverge(self, position: int, recorded: str, requested: str) -> None:
        # Remembered as well as raised: job code that swallows it still fails the job.
        self.diverged = NondeterminismError(self.job_id, position, recorded, requested)
        raise self.diverged
