"""A chaos worker process: the real step and signal handlers, polled from SQS, with faults injected.

    python -m aetheris_infra.chaos.worker --config RUN_DIR/config.json --seed N --name w1
        [--crash-point after_effect --crash-after 7]

It builds one ``Runtime`` for the chaos app on clients that carry the ``FaultInjector`` hook
(seeded with ``--seed``), installs it with ``hosting.use`` as a Lambda execution environment would
have it, and polls the step and signal queues through ``SqsEventSource`` — real Lambda SQS events,
real handlers (``aetheris.handlers.worker`` / ``signals``), partial batch failures, nothing deleted
that the handler did not acknowledge. With a crash plan it dies at that crash point (exit code
``CRASH_EXIT_CODE``); the driver also kills it (SIGKILL) or pauses it (SIGSTOP, SIGCONT) from
outside. SIGTERM stops it after the batch in hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
from typing import Any, get_args

import boto3

from aetheris import Runtime, hosting
from aetheris._clock import IdSource
from aetheris._engine.faults import CrashPoint
from aetheris_infra.chaos import app as chaos_app
from aetheris_infra.chaos.config import RunConfig
from aetheris_infra.chaos.faults import ChaosFaults, CrashPlan, FaultInjector
from aetheris_infra.chaos.jsonl import JsonLines
from aetheris_infra.sqs_source import SqsEventSource

IDLE_SLEEP = (0.02, 0.15)  # seconds between polls of empty queues (jittered, growing)
log = logging.getLogger("aetheris.chaos.worker")


def build_runtime(config: RunConfig, seed: int, name: str, plan: CrashPlan) -> Runtime:
    """The worker's runtime: injected clients, the crash plan, the run's settings."""
    faults_log = JsonLines(config.faults_path, stamp=True)
    injector = FaultInjector(config.rates, seed, faults_log, name)
    clients: dict[str, Any] = {"endpoint_url": config.endpoint, "region_name": "us-east-1"}
    dynamodb = boto3.client("dynamodb", **clients)
    sqs = boto3.client("sqs", **clients)
    injector.attach(dynamodb)
    injector.attach(sqs)
    return Runtime(
        chaos_app.app,
        config.settings(),
        dynamodb=dynamodb,
        sqs=sqs,
        ids=IdSource(seed),
        worker_id=name,
        faults=ChaosFaults(plan, faults_log, name),
    )


def run(config: RunConfig, seed: int, name: str, plan: CrashPlan, stop: threading.Event) -> None:
    from aetheris.handlers.signals import handler as signals_handler
    from aetheris.handlers.worker import handler as worker_handler

    chaos_app.configure(config.effects_path)
    runtime = build_runtime(config, seed, name, plan)
    hosting.use(runtime)
    sqs = runtime.services.queue.client
    sources = [
        SqsEventSource(sqs, config.step_queue_url, worker_handler, batch_size=config.batch_size),
        SqsEventSource(sqs, config.signal_queue_url, signals_handler, batch_size=config.batch_size),
    ]
    # Ready: the driver kills and pauses only workers that got this far (not ones still importing).
    (config.run_dir_path / "workers" / f"{name}.ready").touch()
    jitter = random.Random(seed)
    idle = 0
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:  # the driver gone: stop, do not poll forever
        received = 0
        for source in sources:
            try:
                result = source.poll_once()
            except Exception as error:  # noqa: BLE001 - a failed receive or delete: poll again later
                log.warning("poll of %s failed: %s", source.queue_url.rsplit("/", 1)[-1], error)
                continue
            received += result.received
            if result.crashed is not None:
                log.warning("invocation failed: %r", result.crashed)
            # Whatever was not deleted comes back after the visibility timeout, as on Lambda.
            source.in_flight.clear()
        idle = 0 if received else min(idle + 1, 5)
        if idle:
            low, high = IDLE_SLEEP
            stop.wait(low * idle + jitter.random() * (high - low))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A chaos worker process (see the module docstring).")
    parser.add_argument("--config", required=True, help="the run's config.json, written by the driver")
    parser.add_argument("--seed", type=int, required=True, help="seed of this process's fault stream")
    parser.add_argument("--name", required=True, help="worker id (recorded on every claim and event)")
    parser.add_argument("--crash-point", choices=get_args(CrashPoint), default=None)
    parser.add_argument("--crash-after", type=int, default=1, help="die the Nth time the point is reached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {args.name} %(name)s %(message)s")
    for noisy in ("botocore", "urllib3", "aetheris.worker"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run(
        RunConfig.load(args.config), args.seed, args.name, CrashPlan(args.crash_point, args.crash_after), stop
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
