"""Chaos run: the runtime in real processes under kills, pauses, injected AWS errors and duplicate,
stale and reordered messages — and a check that nothing was lost, duplicated or committed stale.

    .venv/bin/python bench/chaos.py                          # the full run: 200 jobs, >= 1,000 faults
    .venv/bin/python bench/chaos.py --seed 7 --jobs 36       # the CI run's size (tests/chaos/)

It prints progress, then the report's table, and writes ``bench/results/chaos.json``. A seed
names the whole plan (jobs, signals, fault streams, crash plans, chaos actions); process timing
still varies between runs, so a failed seed is re-run with the same command to reproduce it.
The run's files (journal, external ledger, fault log, worker logs, observations.json) stay in the
printed run directory when the run fails or with ``--keep``. Exit status 1 if an invariant broke
or a target (``--min-jobs``, ``--min-faults``, every crash point hit) was missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults()

from aetheris_infra.chaos import ChaosOptions, ChaosRun, check  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "chaos.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--wave-size", type=int, default=50, help="jobs per wave (fresh tables each)")
    parser.add_argument("--min-jobs", type=int, default=200)
    parser.add_argument("--min-faults", type=int, default=1000)
    parser.add_argument("--run-dir", default=None, help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the run directory even if the run passed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    options = ChaosOptions(
        jobs=args.jobs, workers=args.workers, wave_size=args.wave_size, run_dir=args.run_dir, progress=True
    )
    command = f"python bench/chaos.py --seed {args.seed} --jobs {args.jobs} --workers {args.workers}"
    print(f"chaos run: {command}", flush=True)
    run = ChaosRun(args.seed, options)
    print(f"run directory: {run.run_dir}", flush=True)
    started = time.monotonic()
    observations = run.run()
    report = check(observations)
    short = report.targets(args.min_jobs, args.min_faults)
    print()
    print(report.table())
    for miss in short:
        print(f"target missed: {miss}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    options_json = {k: v for k, v in asdict(options).items() if k not in ("run_dir", "progress")}
    document = {
        "command": command,
        "wall_clock_s": round(time.monotonic() - started, 1),
        "options": options_json,
        "targets": {"min_jobs": args.min_jobs, "min_faults": args.min_faults, "missed": short},
        "report": report.to_json(),
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    passed = report.ok and not short
    if passed and not args.keep and args.run_dir is None:
        shutil.rmtree(run.run_dir, ignore_errors=True)
    else:
        print(f"run files kept in {run.run_dir}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
