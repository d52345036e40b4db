"""The chaos harness: the runtime in real processes, hurt on purpose, checked for what must not break.

A run (``ChaosRun``, ``bench/chaos.py``, ``tests/chaos/``) starts a journaling moto server and
several worker processes that poll SQS with the real Lambda handlers, runs a mix of jobs (steps,
tools of both effect semantics, signals, a timer, a compensation) and meanwhile kills workers
(SIGKILL, and at each named crash point), pauses them past their lease (zombies), injects DynamoDB
and SQS errors through a seeded botocore hook, and duplicates, reorders and sends stale messages and
signals. Then ``check`` proves from the store, the server's write journal and an external ledger of
real tool calls: no job lost, every job terminal with the right result, AT_MOST_ONCE effects called
at most once, AT_LEAST_ONCE ones always with the same key and their recorded result used, every
accepted signal consumed exactly once, no commit by a stale fence, and a well-formed log per job.

Modules: ``app`` (the jobs and the external ledger's writer), ``faults`` (botocore hook, crash
points), ``worker`` and ``server`` (process entry points), ``plan`` (what a seed decides),
``driver`` (the run), ``journal`` and ``check`` (the verdict), ``report`` (the figures).

The runtime bugs the first runs found (a crash-loop guard counting given-back claims, a wake-up
lost while an idle duplicate tick held the slot, retried writes that did not recognise their own
first try, store errors taken for the job's own) are fixed; each has a deterministic reproducer in
``tests/functional/test_store_faults.py``.
"""

from aetheris_infra.chaos.check import Observations, check
from aetheris_infra.chaos.config import FaultRates, RunConfig
from aetheris_infra.chaos.driver import ChaosOptions, ChaosRun
from aetheris_infra.chaos.report import ChaosReport

__all__ = ["ChaosOptions", "ChaosReport", "ChaosRun", "FaultRates", "Observations", "RunConfig", "check"]
