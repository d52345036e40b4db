"""Cold ticks with log segments (``_store/segments.py``): what a worker that has not seen a job
reads at steps 10, 100, 1,000 and 10,000, beside the figures from before segments
(``bench/results/history_before_segments.json``: ``history.json`` as it was before its seeded log
had segments), and what writing the segments costs per step.

Three logs, because compression depends on what the events hold:

* natural (steps 10, 100, 1,000): the jobs of ``history.py`` run tick by tick on ``LocalRuntime``;
  its fake clock stamps every event with the same instant, so these events compress unusually well;
* seeded (1,000, 10,000): ``history.py``'s seeding (copies of one real event) plus the segments a
  natural run writes — the figure comparable with the committed 10,000-step one;
* realistic (1,000, 10,000): the same seeding but with what varies on AWS varied: timestamps to the
  microsecond 20-90 ms apart, step durations, claim times and TTLs, three Lambda containers'
  worker ids. This is the honest estimate of the bytes a cold read costs on AWS.

The segment write cost is measured on the realistic log: one run's read-back (eventually
consistent Query) and its PutItem, as ``JobStore.note_commit`` does after every 100th commit.

    .venv/bin/python bench/history_compact.py    # writes bench/results/history_compact.json
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import history
from cost import _machine
from meter import LambdaModel, Meter
from prices import PRICES, PRICES_AS_OF
from template_facts import function_config

from aetheris._store.segments import SEGMENT_EVENTS

BEFORE = Path(__file__).parent / "results" / "history_before_segments.json"
RESULTS = Path(__file__).parent / "results" / "history_compact.json"
POINTS = (1000, 10_000)
_FIELDS = ("requests", "rru", "items_read", "kb_read", "runtime_cpu_ms")


class RealisticJob(history.OneJob):
    """``OneJob`` whose seeded events differ the way a real run's do (see the module docstring)."""

    def seed(self, upto_seq: int) -> None:
        super().seed(upto_seq)
        client, table = self.local.dynamodb, self.local.stack.jobs_table
        rng = random.Random(7)
        workers = [f"2026/12/01/[$LATEST]{rng.getrandbits(128):032x}" for _ in range(3)]
        at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        with self.meter.paused():
            items = []
            for seq in range(2, upto_seq + 1):
                key = {"pk": {"S": self.job_id}, "sk": {"S": f"EV#{seq:010d}"}}
                item = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
                claimed = at + timedelta(milliseconds=rng.randint(3, 9))
                duration = rng.randint(0, 30)
                at = claimed + timedelta(microseconds=rng.randint(20_000, 90_000))
                item.update(
                    at={"S": at.isoformat()},
                    started_at={"S": (at - timedelta(milliseconds=duration)).isoformat()},
                    ended_at={"S": at.isoformat()},
                    duration_ms={"N": str(duration)},
                    claimed_at={"N": str(int(claimed.timestamp() * 1000))},
                    expires_at={"N": str(int(claimed.timestamp()) + 60 * 86400)},
                    worker_id={"S": rng.choice(workers)},
                )
                items.append({"PutRequest": {"Item": item}})
            for start in range(0, len(items), 25):
                client.batch_write_item(RequestItems={table: items[start : start + 25]})
        self.write_segments(upto_seq)  # again: the segments of the events as they are now


def seeded(point: int, realistic: bool, model: LambdaModel) -> dict[str, Any]:
    meter = Meter().install()
    job = (RealisticJob if realistic else history.OneJob)(point + 2 * history.REPEATS + 3, meter)
    try:
        job.tick()
        job.seed(point)  # with the segments a natural run writes (``OneJob.write_segments``)
        cold = history.cold_ticks(job, model)
        out = {"cold": cold, "warm": history.cold_ticks(job, model, cold=False)}  # a median too
        if realistic and point == max(POINTS):
            out["segment_write"] = segment_write_cost(job, meter)
    finally:
        job.close()
        meter.uninstall()
    return out


def segment_write_cost(job: history.OneJob, meter: Meter) -> dict[str, Any]:
    """One run's read-back and put, as after every ``SEGMENT_EVENTS``-th commit; and per step."""
    jobs = job.runtime.services.jobs
    created = jobs.table.get(job.job_id, "EV#0000000000")
    assert created is not None
    before = meter.snapshot()
    run = jobs.segments.stored_run(job.job_id, 9900, 9999)
    assert run is not None
    jobs.segments.write(str(created["at"]), run, 2**31)
    bill = meter.snapshot().minus(before)
    per_step_usd = (bill.rru * PRICES.dynamodb_rru + bill.wru * PRICES.dynamodb_wru) / SEGMENT_EVENTS
    segment = jobs.table.get(job.job_id, "ES#0000009900")
    assert segment is not None
    return {
        "per_segment": {"requests": sum(bill.calls.values()), "rru": bill.rru, "wru": bill.wru},
        "segment_kb": round(len(segment["data"].value) / 1024, 2),
        "bytes_per_event": round(len(segment["data"].value) / SEGMENT_EVENTS, 1),
        "usd_per_million_steps": round(per_step_usd * 1_000_000, 4),
        "prices_as_of": PRICES_AS_OF,
    }


def before_figures() -> dict[str, Any]:
    old = json.loads(BEFORE.read_text())
    out = {k: {f: v["cold"][f] for f in _FIELDS} for k, v in old["natural"].items() if k != "final_tick"}
    out["10000"] = {f: old["seeded"]["10000"]["10000"]["cold"][f] for f in _FIELDS}
    return out


def main() -> None:
    worker = function_config("WorkerFunction")
    model = LambdaModel(worker.memory_mb, worker.architecture)
    before = before_figures()
    natural = history.measure(history.NATURAL, seeded=False, model=model)
    natural.pop("final_tick", None)
    runs = {
        "seeded": {str(p): seeded(p, realistic=False, model=model) for p in POINTS},
        "realistic": {str(p): seeded(p, realistic=True, model=model) for p in POINTS},
    }
    results = {
        "what": "cold (and warm) ticks with log segments of "
        f"{SEGMENT_EVENTS} events; 'before' is the cold tick from "
        "bench/results/history_before_segments.json; "
        f"cold: the median-CPU tick of {history.REPEATS} (runtime_cpu_ms_min: the least)",
        "machine": _machine(),
        "before_cold": before,
        "natural": natural,
        **runs,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))


def summary(results: dict[str, Any]) -> str:
    lines = [f"{'log':10} {'step':>6} {'':6} " + " ".join(f"{f:>14}" for f in _FIELDS)]
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    for step, figures in results["before_cold"].items():
        rows.append(("before", step, "cold", figures))
    for step, pair in results["natural"].items():
        rows.append(("natural", step, "cold", pair["cold"]))
    for log in ("seeded", "realistic"):
        for step, pair in results[log].items():
            rows += [(log, step, "cold", pair["cold"]), (log, step, "warm", pair["warm"])]
    for log, step, kind, figures in rows:
        lines.append(f"{log:10} {step:>6} {kind:6} " + " ".join(f"{figures[f]:>14}" for f in _FIELDS))
    lines.append(f"segment write: {json.dumps(results['realistic']['10000']['segment_write'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
