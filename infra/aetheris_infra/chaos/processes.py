"""The processes of a chaos run: the journaling moto server and the worker pool.

``WorkerPool`` keeps ``size`` worker processes alive: each is spawned with its own seed and the
next crash plan of the run's ``CrashSchedule``, and respawned (with the next plan) as soon as it
exits — whether it died at its crash point, was SIGKILLed, or stopped. ``kill`` and ``pause`` are
the driver's hands on them: SIGKILL at a random moment, or SIGSTOP past the lease and SIGCONT
later (the zombie case: it wakes up believing it still holds its job). Every process has its
output in ``run_dir/workers/<name>.log``. Processes are only ever signalled by their own pid.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aetheris_infra.chaos.jsonl import JsonLines
from aetheris_infra.chaos.plan import CrashSchedule
from aetheris_infra.offline import OFFLINE_ENV

REGION = "us-east-1"


@dataclass
class Worker:
    slot: int
    name: str
    process: subprocess.Popen[bytes]
    paused_until: float | None = None


class WorkerPool:
    def __init__(
        self, size: int, run_dir: Path, crashes: CrashSchedule, rng: random.Random, faults: JsonLines
    ) -> None:
        self.size = size
        self.run_dir = run_dir
        self.crashes = crashes
        self.random = rng
        self.faults = faults
        self.spawned = 0
        self.config_path: Path | None = None
        self._workers: dict[int, Worker] = {}
        self.names: dict[int, str] = {}  # pid → worker id, of every process spawned

    def start(self, config_path: Path) -> None:
        self.config_path = config_path
        for slot in range(self.size):
            self._spawn(slot)

    def reap(self) -> None:
        """Respawn every worker that has exited."""
        for slot, worker in list(self._workers.items()):
            if worker.process.poll() is not None:
                self._spawn(slot)

    def kill(self) -> None:
        running = self._running()
        if running:
            victim = self.random.choice(running)
            victim.process.send_signal(signal.SIGKILL)
            self.faults.append({"kind": "sigkill", "who": victim.name, "pid": victim.process.pid})

    def pause(self, lease_s: float) -> None:
        running = self._running()
        if len(running) < 2:
            return  # keep one worker moving
        victim = self.random.choice(running)
        pause = lease_s + self.random.uniform(0.5, 3.0)
        victim.process.send_signal(signal.SIGSTOP)
        victim.paused_until = time.monotonic() + pause
        self.faults.append(
            {"kind": "zombie", "who": victim.name, "pid": victim.process.pid, "pause_s": round(pause, 2)}
        )

    def resume_due(self) -> None:
        for worker in self._workers.values():
            if worker.paused_until is not None and time.monotonic() >= worker.paused_until:
                worker.process.send_signal(signal.SIGCONT)
                worker.paused_until = None

    def stop(self) -> None:
        """SIGTERM every worker (after SIGCONT if paused); SIGKILL what has not exited in 10 s."""
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGCONT)
                worker.process.terminate()
        for worker in workers:
            _wait_or_kill(worker.process)

    def _running(self) -> list[Worker]:
        """Workers that run, are not paused, and are ready (polling: done importing and connecting)."""
        ready = self.run_dir / "workers"
        return [
            w
            for w in self._workers.values()
            if w.paused_until is None and w.process.poll() is None and (ready / f"{w.name}.ready").exists()
        ]

    def _spawn(self, slot: int) -> None:
        assert self.config_path is not None, "start() the pool first"
        self.spawned += 1
        name = f"w{slot}.{self.spawned}"
        plan = self.crashes.next()
        command = [sys.executable, "-m", "aetheris_infra.chaos.worker", "--config", str(self.config_path)]
        command += ["--seed", str(self.random.getrandbits(32)), "--name", name]
        if plan.point is not None:
            command += ["--crash-point", plan.point, "--crash-after", str(plan.after)]
        logs = self.run_dir / "workers"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment())
        self._workers[slot] = Worker(slot, name, process)
        self.names[process.pid] = name


class ServerProcess:
    """``python -m aetheris_infra.chaos.server``: started, asked for its URL, stopped with SIGTERM."""

    def __init__(self, run_dir: Path, journal: Path) -> None:
        self.run_dir = run_dir
        self.journal = journal
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        command = [sys.executable, "-m", "aetheris_infra.chaos.server", "--journal", str(self.journal)]
        with (self.run_dir / "server.log").open("wb") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=environment())
        assert self._process.stdout is not None
        endpoint = self._process.stdout.readline().decode().strip()
        if not endpoint.startswith("http"):
            self.stop()
            raise RuntimeError(f"the chaos moto server did not start; see {self.run_dir / 'server.log'}")
        return endpoint

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
        _wait_or_kill(self._process)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


def _wait_or_kill(process: subprocess.Popen[Any]) -> None:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def environment() -> dict[str, str]:
    """The child processes' environment: fake credentials, quiet Powertools, unbuffered output."""
    env = {**OFFLINE_ENV, **os.environ}
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env
