"""The chaos harness: the runtime in real processes, hurt on purpose, checked for what must not break.

A run (``ChaosRun``, ``bench/chaos.py``, ``tests/chaos/``) starts a journaling moto server and
several worker processes that poll SQS with the real Lambda handlers, runs a mix of jobs (steps,
tools of both effect semantics, signals, a timer, a compensation) and meanwhile kills workers
(SIGKILL, and at each named crash point), pauses them past their lease (zombies), injects DynamoDB
and SQS errors through a seeded botocore hook, and duplicates, reorders and sends stale messages and
signals. The workload walks off the happy path as far as ``Workload`` says (cancels at any
moment, ~200 KB errors, reordered tool calls, a bare ``except``, odd inputs and payloads, long
timers), each element switchable. The run waits as long as its jobs commit (``Progress`` tails the
server's journal) and calls a wave stuck only when nothing committed for a stall window. Then
``check`` proves from the store, the server's write journal and an external ledger of real tool
calls: no job lost (and, for one that is, whether it was stuck or slow), every job terminal with
the result a fault-free run of its plan gives, cancelled jobs compensated exactly once,
AT_MOST_ONCE effects called at most once, AT_LEAST_ONCE repeats explained by faults, calls matched
by identity, every accepted signal consumed exactly once, odd values refused or kept exactly,
timers never early nor late, retention complete and never early, empty dead-letter queues, no
commit by a stale fence, and a well-formed log per job.

Modules: ``app`` (the jobs and the external ledger's writer), ``workload`` (the elements off the
happy path), ``faults`` (botocore hook, crash points), ``worker`` and ``server`` (process entry
points), ``plan`` (what a seed decides), ``driver``, ``clients``, ``stack`` and ``progress`` (the
run), ``journal``, ``observations``, ``checked`` and ``check*`` (the verdict), ``report`` (the
figures).

The runtime bugs the first runs found (a crash-loop guard counting given-back claims, a wake-up
lost while an idle duplicate tick held the slot, retried writes that did not recognise their own
first try, store errors taken for the job's own) are fixed; each has a deterministic reproducer in
``tests/functional/test_store_faults.py``.
"""

from aetheris_infra.chaos.check import Observations, check
from aetheris_infra.chaos.config import FaultRates, RunConfig
from aetheris_infra.chaos.driver import ChaosRun
from aetheris_infra.chaos.options import ChaosOptions
from aetheris_infra.chaos.report import ChaosReport
from aetheris_infra.chaos.workload import Workload

__all__ = [
    "ChaosOptions",
    "ChaosReport",
    "ChaosRun",
    "FaultRates",
    "Observations",
    "RunConfig",
    "Workload",
    "check",
]
