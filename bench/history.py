"""What one tick costs as a job's log grows: requests, read units, items and bytes read, runtime CPU
— warm (the worker has seen the job) and cold (it has not) — at steps 10, 100, 1,000 and 10,000,
and what the final tick costs (the end of a long job).

One job on the embedded stack (moto in-process, one worker), driven one tick at a time
(``poll_once``: one message, one invocation), every botocore call billed by ``meter.py``. A cold
tick is the same worker with all it knows of the job dropped — its event cache, its parsed log and
its sticky (parked) job function — which is what a worker that never saw the job does: it reads the
log (segments and the events after them) and replays the job function from the top. Steps 10, 100
and 1,000 come from a natural run; step 10,000 from a seeded log (the event items a natural run
writes, put straight into the table, and the ``ES#`` segments it writes, made by
``_store/segments.py``'s own encoder) — checked by seeding a log of 1,000 too and comparing its ticks
with the natural run's.

Runtime CPU carries the noise of a shared machine (and of the collector walking moto's heap), so
the cold tick is measured ``REPEATS`` times at each point (each a cold tick of the next step) and
its figures are those of the median-CPU tick, with the min and every run's CPU beside it.

    .venv/bin/python bench/history.py          # writes bench/results/history.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

from cost import _machine  # noqa: E402
from meter import Bill, LambdaModel, Meter  # noqa: E402
from template_facts import function_config, table_shapes  # noqa: E402
from workloads import build_app  # noqa: E402

from aetheris._store.queue import Tick  # noqa: E402
from aetheris._store.segments import SEGMENT_EVENTS  # noqa: E402

NATURAL = (10, 100, 1000)
SEEDED = (1000, 10_000)  # each on a log of its own
REPEATS = 5  # cold ticks measured at each point (the median is reported)
RESULTS = Path(__file__).parent / "results" / "history.json"


def tick_figures(bill: Bill, wall_s: float, model: LambdaModel) -> dict[str, Any]:
    io: dict[str, float] = {}
    for key, n in bill.lambda_io.items():
        service = key.split(".", 1)[1]
        io[service] = io.get(service, 0) + n
    cpu = bill.lambda_cpu_s["worker"]
    return {
        "requests": sum(bill.calls.values()),
        "calls": {k: v for k, v in sorted(bill.calls.items()) if v},
        "rru": bill.rru,
        "wru": bill.wru + bill.index_wru,
        "items_read": bill.items_read,
        "kb_read": round(bill.bytes_read / 1024, 1),
        "runtime_cpu_ms": round(1000 * cpu, 2),
        "wall_ms_here": round(1000 * wall_s, 1),
        "lambda_ms_estimate": round(1000 * model.seconds(cpu, io), 1),
    }


class OneJob:
    """A single job on a fresh embedded stack, advanced one tick at a time."""

    def __init__(self, steps: int, meter: Meter) -> None:
        from aetheris.testing import LocalRuntime

        self.meter = meter
        self.local = LocalRuntime(build_app(), workers=1).__enter__()
        local = self.local
        meter.shapes = table_shapes(
            {"JobsTable": local.stack.jobs_table, "InboxTable": local.stack.inbox_table}
        )
        self.source = local.sources[0]
        self.source.handler = meter.function("worker", self.source.handler)
        self.runtime = local.runtimes[0]
        with meter.paused():
            self.job_id = local.start("step", steps)
        self.ticks = 0

    def tick(self, cold: bool = False) -> tuple[Bill, float]:
        if cold:  # a worker that never saw this job: no events, no parsed log, no parked function
            worker = self.runtime.worker
            self.runtime.services.jobs._forget(self.job_id)
            worker.sticky.forget(self.job_id)
            worker.parsed.forget(self.job_id)
        before = self.meter.snapshot()
        started = time.perf_counter()
        result = self.source.poll_once()
        wall = time.perf_counter() - started
        if result.received != 1 or result.crashed is not None:
            raise RuntimeError(f"tick {self.ticks} did not run cleanly: {result}")
        self.ticks += 1
        return self.meter.snapshot().minus(before), wall

    def seed(self, upto_seq: int) -> None:
        """Write the events a natural run would have written up to ``upto_seq`` (after one real tick)."""
        table = self.local.stack.jobs_table
        client = self.local.dynamodb
        with self.meter.paused():
            key = {"pk": {"S": self.job_id}, "sk": {"S": "EV#0000000001"}}
            first = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
            items = []
            for seq in range(2, upto_seq + 1):
                op = seq - 1
                # Seeded events granted nothing: the seeded tick below carries no grant token.
                item = {k: v for k, v in first.items() if k not in ("grant_token", "grant_until")}
                item.update(
                    sk={"S": f"EV#{seq:010d}"},
                    seq={"N": str(seq)},
                    op={"N": str(op)},
                    step_id={"S": f"{op}-plain"},
                    result={"S": str(op)},
                )
                items.append({"PutRequest": {"Item": item}})
            for start in range(0, len(items), 25):
                client.batch_write_item(RequestItems={table: items[start : start + 25]})
            self.write_segments(upto_seq)
            # The queued tick names the slot after step 0; the next one is after the seeded log.
            self.local.sqs.purge_queue(QueueUrl=self.local.stack.step_queue_url)
            self.local.queue.send(Tick(job_id=self.job_id, seq=upto_seq + 1))
        self.ticks = upto_seq

    def write_segments(self, upto_seq: int) -> None:
        """The ``ES#`` segments a natural run writes after every ``SEGMENT_EVENTS``-th commit (the
        runs of events the seeded log holds), read back and encoded as ``JobStore.note_commit``
        does; a subclass that changes the seeded events calls it again after changing them."""
        jobs = self.runtime.services.jobs
        with self.meter.paused():
            created = jobs.table.get(self.job_id, "EV#0000000000")
            assert created is not None
            for first in range(0, upto_seq + 2 - SEGMENT_EVENTS, SEGMENT_EVENTS):
                run = jobs.segments.stored_run(self.job_id, first, first + SEGMENT_EVENTS - 1)
                assert run is not None
                jobs.segments.write(str(created["at"]), run, 2**31)

    def close(self) -> None:
        self.local.__exit__(None, None, None)


def cold_ticks(job: OneJob, model: LambdaModel, repeats: int = REPEATS, cold: bool = True) -> dict[str, Any]:
    """``repeats`` cold (or, ``cold=False``, warm) ticks in a row (steps n .. n + repeats - 1): the
    median-CPU one's figures, with the min and each run's CPU."""
    runs = [tick_figures(*job.tick(cold=cold), model) for _ in range(repeats)]
    cpu = sorted(run["runtime_cpu_ms"] for run in runs)
    median = sorted(runs, key=lambda run: run["runtime_cpu_ms"])[len(runs) // 2]
    return {
        **median,
        "runtime_cpu_ms_min": cpu[0],
        "runtime_cpu_ms_runs": [run["runtime_cpu_ms"] for run in runs],
    }


def measure(
    points: tuple[int, ...], seeded: bool, model: LambdaModel, job_class: type[OneJob] | None = None
) -> dict[str, Any]:
    meter = Meter().install()
    top = max(points)
    job = (job_class or OneJob)(top + 2 * REPEATS + 3, meter)
    out: dict[str, Any] = {}
    try:
        if seeded:
            job.tick()  # step 0, written by the worker: the template of the seeded events
            job.seed(top)
        for point in points:
            while job.ticks < point:
                job.tick()
            cold = cold_ticks(job, model)  # steps `point`.., each having read and replayed the log
            # The next steps, on the worker that just saw the job: as many as the cold ones, so the
            # warm figure is a median too (one tick's CPU is at the mercy of a shared machine).
            warm = cold_ticks(job, model, cold=False)
            out[str(point)] = {"cold": cold, "warm": warm}
        while job.ticks < top + 2 * REPEATS + 3:
            job.tick()
        final, final_wall = job.tick()
        out["final_tick"] = tick_figures(final, final_wall, model)
    finally:
        job.close()
        meter.uninstall()
    return out


def main() -> None:
    worker = function_config("WorkerFunction")
    model = LambdaModel(worker.memory_mb, worker.architecture)
    natural = measure(NATURAL, seeded=False, model=model)
    print("natural", json.dumps(natural, indent=1), flush=True)
    seeded: dict[str, Any] = {}
    for point in SEEDED:
        seeded[str(point)] = measure((point,), seeded=True, model=model)
    print("seeded", json.dumps(seeded, indent=1), flush=True)
    results = {
        "what": "one tick of an effect-free step at each log length, warm and cold, on the embedded stack; "
        "runtime CPU excludes moto; lambda_ms_estimate = CPU scaled to the function's vCPU share + "
        "a typical in-region latency per AWS call (meter.LambdaModel)",
        "lambda": {
            "memory_mb": worker.memory_mb,
            "architecture": worker.architecture,
            "latency_s": model.latency_s,
        },
        "machine": _machine(),
        "natural": natural,
        "seeded": seeded,
    }
    print(summary(results))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def summary(results: dict[str, Any]) -> str:
    lines = [
        f"{'log':8} {'step':>6} {'':5} {'requests':>8} {'RRU':>6} {'items':>6} {'KB read':>8} "
        f"{'CPU ms':>8} {'(min)':>8}"
    ]
    rows = [("natural", k, v) for k, v in results["natural"].items() if k != "final_tick"]
    rows += [("seeded", k, v[k]) for k, v in results["seeded"].items()]
    for log, step, pair in rows:
        for kind in ("warm", "cold"):
            t = pair[kind]
            lines.append(
                f"{log:8} {step:>6} {kind:5} {t['requests']:8} {t['rru']:6} {t['items_read']:6} "
                f"{t['kb_read']:8} {t['runtime_cpu_ms']:8} {t.get('runtime_cpu_ms_min', ''):>8}"
            )
    steps = 2 * REPEATS + 3
    finals = (
        (f"{1000 + steps}", results["natural"]["final_tick"]),
        (f"{10_000 + steps}", results["seeded"]["10000"]["final_tick"]),
    )
    for label, final in finals:
        lines.append(
            f"final tick of a {label}-step job: {final['requests']} requests, {final['wru']} WRU, "
            f"{final['wall_ms_here']} ms here, ≈{final['lambda_ms_estimate']} ms on Lambda"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
