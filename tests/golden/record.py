"""Record the golden histories of the support agent: ``python tests/golden/record.py``.

Each scenario runs job ``support.refund`` (scripted model) on a ``LocalRuntime`` seeded with the
scenario's own seed, whose fake clock starts at its fixed epoch, and writes the job's history with
``JobHistory.dump`` next to this file. The same code records the same bytes, so a diff after
re-recording shows exactly what a change did to the log.

Record again only on purpose. These files stand for jobs already in flight: ``test_golden.py``
replays them against today's code, and a change that makes one diverge would break such jobs. Ship
that change as a new job version instead, and keep these files to prove version "1" still replays.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions") not in sys.path:  # run as a script: find the agents as pytest and Lambda do
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]

from aetheris import JobStatus  # noqa: E402
from aetheris.history import JobHistory  # noqa: E402
from aetheris.testing import LocalRuntime  # noqa: E402
from aetheris_infra.demo import settle  # noqa: E402
from aetheris_infra.offline import use_offline_defaults  # noqa: E402
from agents import support  # noqa: E402
from agents.model import ScriptedModel, use_model  # noqa: E402
from agents.tools import registry  # noqa: E402

GOLDEN_DIR = Path(__file__).resolve().parent
HEADPHONES = {  # $129.00: over the approval threshold
    "ticket_id": "T-3001",
    "customer_id": "cus-42",
    "order_id": "ord-1001",
    "message": "My headphones arrived broken. I would like a refund.",
}
CABLE = {  # $19.00: refunded without a human
    "ticket_id": "T-3002",
    "customer_id": "cus-7",
    "order_id": "ord-1004",
    "message": "The charging cable arrived damaged, please refund it.",
}
APPROVAL = {"approved": True, "by": "dana (support lead)"}


def happy(local: LocalRuntime) -> str:
    """Parks for the approval, a human grants it, the refund and reply go out, the survey 3 days later."""
    job_id = local.start("support.refund", HEADPHONES)
    settle(local, job_id)
    local.signal(job_id, support.APPROVAL_SIGNAL, APPROVAL, signal_id="approval-T-3001")
    return _after_the_reply(local, job_id)


def retried(local: LocalRuntime) -> str:
    """Under the threshold: no approval; the CRM drops the first connection and the step is retried."""
    registry.crm.fail_next = 1
    job_id = local.start("support.refund", CABLE)
    return _after_the_reply(local, job_id)


def signalled(local: LocalRuntime) -> str:
    """The approval arrives right after the start, before the job reaches its wait: it is not lost."""
    job_id = local.start("support.refund", HEADPHONES)
    local.signal(job_id, support.APPROVAL_SIGNAL, APPROVAL, signal_id="approval-T-3001")
    return _after_the_reply(local, job_id)


def compensated(local: LocalRuntime) -> str:
    """Approved and refunded, then the reply bounces for good: the refund is reversed, the job FAILED."""
    registry.mail.reject("ada@example.com")  # the address of ord-1001's customer
    job_id = local.start("support.refund", HEADPHONES)
    settle(local, job_id)
    local.signal(job_id, support.APPROVAL_SIGNAL, APPROVAL, signal_id="approval-T-3001")
    settle(local, job_id)
    return job_id


def _after_the_reply(local: LocalRuntime, job_id: str) -> str:
    settle(local, job_id)  # replied; asleep on the follow-up timer
    local.advance(support.FOLLOW_UP_AFTER)
    settle(local, job_id)
    return job_id


Scenario = Callable[[LocalRuntime], str]
# name -> (scenario, seed of its runtime's ids, the status it must end in)
SCENARIOS: dict[str, tuple[Scenario, int, JobStatus]] = {
    "happy": (happy, 1, JobStatus.COMPLETED),
    "retried": (retried, 2, JobStatus.COMPLETED),
    "signalled": (signalled, 3, JobStatus.COMPLETED),
    "compensated": (compensated, 4, JobStatus.FAILED),
}


def record(name: str) -> JobHistory:
    """Run scenario ``name`` from fresh fakes and return the job's history."""
    scenario, seed, status = SCENARIOS[name]
    registry.reset()
    use_model(ScriptedModel())
    try:
        with LocalRuntime(support.app, workers=2, seed=seed) as local, redirect_stdout(io.StringIO()):
            history = local.export(scenario(local))
    finally:
        use_model(None)
        registry.reset()
    if history.job.status is not status:
        raise RuntimeError(
            f"scenario {name} ended {history.job.status.value}, not {status.value}: not recorded"
        )
    return history


def main() -> int:
    use_offline_defaults()
    for name in SCENARIOS:
        path = GOLDEN_DIR / f"{name}.json"
        record(name).dump(path)
        print(f"recorded {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
