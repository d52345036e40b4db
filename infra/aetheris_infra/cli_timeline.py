"""``aetheris trace``'s timeline: the rows the UI draws (``aetheris/ui/app.js`` ``timelineRows``), as a
table with a text bar — one row per attempt (a crashed one and its takeover included), wait and
timer, the retry backoff drawn after a failed attempt, placed on the job's time span."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from rich.text import Text

from aetheris_infra.cli_render import Out, cell, table_of

BAR: Final = 24  # characters of the bar column
_GLYPHS: Final = {"committed": "█", "failed": "█", "crashed": "▚", "running": "▒", "wait": "░", "timer": "░"}
_STYLES: Final = {"committed": "green", "failed": "red", "crashed": "bold red", "running": "cyan"}


@dataclass
class Row:
    op: int
    operation: str
    what: str
    worker: str
    fence: Any
    outcome: str
    start: datetime | None
    end: datetime | None
    note: str
    backoff_until: datetime | None = None
    start_known: bool = True


def _at(raw: Any) -> datetime | None:
    return datetime.fromisoformat(str(raw)) if raw else None


def timeline_rows(trace: dict[str, Any], now: datetime) -> list[Row]:
    rows: list[Row] = []
    last_end = _at(trace.get("created_at"))
    for op in trace.get("operations") or []:
        name = f"{op.get('kind')} {op.get('name')}".strip()
        index = int(op.get("index", 0))
        for a in op.get("attempts") or []:
            known = _at(a.get("started_at")) or _at(a.get("claimed_at"))
            start = known or last_end
            end = _at(a.get("ended_at")) or _at(a.get("taken_over_at"))
            end = end or (now if a.get("outcome") == "running" else start)
            note = a.get("ended_because") or ""
            if a.get("outcome") == "crashed":
                note = f"crashed: {note}"
            elif a.get("reclaimed_from"):
                note = f"took over from {a['reclaimed_from']}"
            rows.append(
                Row(
                    index,
                    name,
                    f"attempt {a.get('attempt')}",
                    str(a.get("worker_id")),
                    a.get("fence"),
                    str(a.get("outcome")),
                    start,
                    end,
                    note,
                    backoff_until=_at(a.get("next_attempt_at")) if a.get("outcome") == "failed" else None,
                    start_known=known is not None,
                )
            )
            last_end = end
        wait, signal, timer = op.get("wait"), op.get("signal"), op.get("timer")
        if wait:
            start = _at(wait.get("parked_at")) or _at((signal or {}).get("arrived_at")) or last_end
            end = _at((signal or {}).get("consumed_at")) or _at(wait.get("timed_out_at")) or now
            note = f"released by signal {signal.get('signal_id')}" if signal else str(op.get("state"))
            rows.append(Row(index, name, "wait", "", "", "wait", start, end, note))
            last_end = end
        if timer:
            end = _at(timer.get("fired_at")) or now
            note = f"fires at {timer.get('fire_at')}"
            rows.append(Row(index, name, "timer", "", "", "timer", _at(timer.get("started_at")), end, note))
            last_end = end
        if op.get("kind") == "fanout" and op.get("started_at"):
            end = _at(op.get("ended_at")) or now
            rows.append(
                Row(index, name, "fan-out", "", "", "wait", _at(op["started_at"]), end, str(op["state"]))
            )
        elif op.get("child_id"):
            end = _at(op.get("ended_at")) or now
            note = f"child job {op['child_id']} ({op.get('state')})"
            rows.append(
                Row(index, name, "child", "", "", "wait", _at(op.get("started_at")) or last_end, end, note)
            )
        elif not op.get("attempts") and not wait and not timer:
            at = _at(op.get("ended_at")) or _at(op.get("started_at")) or last_end
            rows.append(Row(index, name, str(op.get("state")), "", "", str(op.get("state")), at, at, ""))
    return rows


def show_timeline(out: Out, trace: dict[str, Any], now: datetime) -> None:
    rows = timeline_rows(trace, now)
    moments = [t for r in rows for t in (r.start, r.end, r.backoff_until) if t is not None]
    created = _at(trace.get("created_at"))
    if created is not None:
        moments.append(created)
    if not rows or not moments:
        out.console.print("timeline: nothing ran yet")
        return
    t0, t1 = min(moments), max(moments)
    span = max((t1 - t0).total_seconds(), 0.001)
    table = table_of(f"Timeline ({span:.1f} s)", "op", "operation", "try", "worker", "fence", "outcome")
    for column in ("+s", "ms", "bar", "note"):
        table.add_column(
            column, justify="right" if column in ("+s", "ms") else "left", no_wrap=column == "bar"
        )

    def col(t: datetime) -> int:
        return min(BAR - 1, int((t - t0).total_seconds() / span * BAR))

    for r in rows:
        bar = [" "] * BAR
        if r.start is not None and r.end is not None:
            for i in range(col(r.start), col(r.end) + 1):
                bar[i] = _GLYPHS.get(r.outcome, "■")
        if r.backoff_until is not None and r.end is not None:
            for i in range(col(r.end) + 1, col(r.backoff_until) + 1):
                bar[i] = "·"
        offset = "?" if not r.start_known or r.start is None else f"{(r.start - t0).total_seconds():.2f}"
        timed = r.start_known and r.start is not None and r.end is not None
        duration = int((r.end - r.start).total_seconds() * 1000) if timed and r.end and r.start else ""
        table.add_row(
            cell(r.op),
            cell(r.operation),
            cell(r.what),
            cell(r.worker),
            cell(r.fence),
            Text(r.outcome, style=_STYLES.get(r.outcome, "magenta")),
            cell(offset),
            cell(duration),
            Text("".join(bar), style=_STYLES.get(r.outcome, "magenta")),
            cell(r.note, 80),
        )
    out.console.print(table)
