"""Local speed beside the peers: the same 3-step and 20-step jobs, and a job that waits for a
signal, on our embedded stack, on DBOS with SQLite and on the Lambda durable functions testing
runner — interleaved in one run (system by system inside each round), so a shared, noisy machine
slows all of them alike.

Figures: steps/s (jobs run one after another, each to its end), p50/p99 of the time from one
step's body to the next one's, signal → resume (signal sent → the next step's body runs), and our
runtime's drift (the 500th job against the first). Also signal → resume on ``aetheris dev``'s stack
(real clock, pollers). What each system is, honestly: see ``peer_systems.py`` — ours runs every
step through DynamoDB and SQS APIs on an emulator; DBOS writes a local SQLite file; the LDF runner
checkpoints into memory.

    make bench-peers        # builds .venv-bench with the peers, runs this, writes bench/results/peers.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")

import peer_systems  # noqa: E402
from peer_systems import MARKS, Dbos, Dev, Ldf, Ours  # noqa: E402

SHAPES = (3, 20)
RESULTS = Path(__file__).parent / "results" / "peers.json"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def gaps(marks: list[float], per_job: int) -> list[float]:
    """Step-to-step times inside each job (the first step of a job has no predecessor)."""
    out = []
    for start in range(0, len(marks) - per_job + 1, per_job):
        job = marks[start : start + per_job]
        out += [b - a for a, b in itertools.pairwise(job)]
    return out


def speed(system: Any, steps: int, jobs: int) -> tuple[float, float, list[float]]:
    """Wall seconds, CPU seconds (this process, all threads) and step-to-step gaps of ``jobs`` jobs."""
    MARKS.clear()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(jobs):
        system.run_job(steps)
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, used, gaps(list(MARKS), steps)


def drift(jobs: int) -> dict[str, Any]:
    """One LocalRuntime, ``jobs`` 3-step jobs in a row: is the last tenth slower than the first?

    Means (as before) and medians of each tenth: a full garbage collection — its cost grows with
    everything the process holds, moto's tables included — lands in one job of a tenth or another
    and moves a tenth's mean by up to ~20 % between identical runs; the median shows the typical job.
    ``gc_ms_per_job`` is the collector's share of each tenth (``gc.callbacks``)."""
    import gc

    collecting = {"started": 0.0, "spent": 0.0}

    def collector(phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            collecting["started"] = time.process_time()
        else:
            collecting["spent"] += time.process_time() - collecting["started"]

    gc.callbacks.append(collector)
    try:
        with Ours() as ours:
            times, cpus, gcs = [], [], []
            for _ in range(jobs):
                started, cpu, collected = time.perf_counter(), time.process_time(), collecting["spent"]
                ours.run_job(3)
                times.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
                gcs.append(collecting["spent"] - collected)
    finally:
        gc.callbacks.remove(collector)
    tenth = max(1, jobs // 10)
    first, last = statistics.mean(times[:tenth]), statistics.mean(times[-tenth:])
    first_cpu, last_cpu = statistics.mean(cpus[:tenth]), statistics.mean(cpus[-tenth:])
    first_median, last_median = statistics.median(cpus[:tenth]), statistics.median(cpus[-tenth:])
    return {
        "jobs": jobs,
        "first_tenth_ms_per_job": round(1000 * first, 1),
        "last_tenth_ms_per_job": round(1000 * last, 1),
        "last_over_first": round(last / first, 2),
        "first_tenth_cpu_ms_per_job": round(1000 * first_cpu, 1),
        "last_tenth_cpu_ms_per_job": round(1000 * last_cpu, 1),
        "last_over_first_cpu": round(last_cpu / first_cpu, 2),
        "first_tenth_cpu_ms_median": round(1000 * first_median, 1),
        "last_tenth_cpu_ms_median": round(1000 * last_median, 1),
        "last_over_first_cpu_median": round(last_median / first_median, 2),
        "gc_ms_per_job_by_tenth": [
            round(1000 * statistics.mean(gcs[i * tenth : (i + 1) * tenth]), 2) for i in range(jobs // tenth)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=10, help="jobs of each shape per system per round")
    parser.add_argument("--signals", type=int, default=5, help="signal → resume samples per system per round")
    parser.add_argument("--drift-jobs", type=int, default=500)
    parser.add_argument("--label", default="", help="recorded with the results (e.g. before/after)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-dev", action="store_true", help="skip signal → resume on aetheris dev")
    args = parser.parse_args()

    load_at_start = _load()
    systems = {"ours": Ours(), "dbos": Dbos(), "ldf": Ldf()}
    opened = {key: system.__enter__() for key, system in systems.items()}
    elapsed: dict[str, dict[int, float]] = {k: dict.fromkeys(SHAPES, 0.0) for k in systems}
    cpu: dict[str, dict[int, float]] = {k: dict.fromkeys(SHAPES, 0.0) for k in systems}
    step_gaps: dict[str, dict[int, list[float]]] = {k: {s: [] for s in SHAPES} for k in systems}
    resume: dict[str, list[float]] = {k: [] for k in (*systems, "dev")}
    try:
        for shape in SHAPES:  # warm-up: imports, first tables, first SQLite pages
            for system in opened.values():
                system.run_job(shape)
        for round_ in range(args.rounds):
            for key, system in opened.items():
                for shape in SHAPES:
                    seconds, used, found = speed(system, shape, args.jobs)
                    elapsed[key][shape] += seconds
                    cpu[key][shape] += used
                    step_gaps[key][shape] += found
                for _ in range(args.signals):
                    resume[key].append(system.signal_resume())
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        for system in opened.values():
            system.__exit__(None, None, None)
    # After the others: its moto server wipes the process's moto state, the in-process one's too.
    if not args.no_dev:
        with Dev() as dev:
            resume["dev"] = [dev.signal_resume() for _ in range(args.signals * args.rounds)]

    results: dict[str, Any] = {
        "label": args.label,
        "what": "steps/s of jobs run one after another (steps_per_cpu_s: per second of this process's CPU, "
        "which a busy shared machine distorts less); per-step p50/p99 = step body to next step body; "
        "signal → resume = signal sent to next step body; interleaved rounds on one machine",
        "machine": _machine(),
        # 1-minute load average: on a shared machine, what the figures were measured under.
        "load_average": {"start": load_at_start, "end": _load()},
        "rounds": args.rounds,
        "jobs_per_shape_per_round": args.jobs,
        "systems": {},
    }
    for key, system in systems.items():
        row: dict[str, Any] = {"name": system.name, "measures": _measures(key)}
        for shape in SHAPES:
            total_steps = shape * args.jobs * args.rounds
            row[f"{shape}_step"] = {
                "steps_per_s": round(total_steps / elapsed[key][shape], 1),
                "steps_per_cpu_s": round(total_steps / max(cpu[key][shape], 1e-9), 1),
                "p50_ms": round(1000 * quantile(step_gaps[key][shape], 0.5), 2),
                "p99_ms": round(1000 * quantile(step_gaps[key][shape], 0.99), 2),
            }
        row["signal_resume_ms"] = _dist(resume[key])
        results["systems"][key] = row
    if resume["dev"]:
        results["systems"]["dev"] = {"name": Dev.name, "signal_resume_ms": _dist(resume["dev"])}
    ours, ldf = results["systems"]["ours"], results["systems"]["ldf"]
    results["ours_over_ldf"] = {
        f"{s}_step": {
            measure: round(ours[f"{s}_step"][measure] / ldf[f"{s}_step"][measure], 2)
            for measure in ("steps_per_s", "steps_per_cpu_s")
        }
        for s in SHAPES
    }
    results["drift"] = drift(args.drift_jobs)
    print(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2) + "\n")


def _dist(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(1000 * quantile(values, 0.5), 1),
        "max": round(1000 * max(values), 1),
        "samples": len(values),
    }


def _measures(key: str) -> str:
    doc = peer_systems.__doc__ or ""
    marker = {"ours": "``Ours``", "dbos": "``Dbos``", "ldf": "``Ldf``"}[key]
    text = doc.split(marker, 1)[1].split("\n- ", 1)[0]
    return " ".join(text.replace(":", "", 1).split())


def _load() -> float:
    import os

    return round(os.getloadavg()[0], 2)


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}"


if __name__ == "__main__":
    main()
