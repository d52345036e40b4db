"""The chaos harness's own parts that need no processes: progress from the journal, the workload switches.

``Progress`` is what the run's deadlines follow (a wave ends when nothing committed for the stall
window), so it must see every commit the server journals, including a line still being written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aetheris_infra.chaos.plan import plan_jobs
from aetheris_infra.chaos.progress import JobProgress, Progress
from aetheris_infra.chaos.workload import ELEMENTS, Workload, walks


def _commit(n: int, job_id: str, seq: int, t: float, event_type: str = "StepCommitted") -> dict[str, object]:
    return {
        "n": n,
        "t": t,
        "op": "UpdateItem",
        "status": 200,
        "req": {
            "Key": {"pk": {"S": job_id}, "sk": {"S": f"EV#{seq:010d}"}},
            "UpdateExpression": "SET #s = :s, #f = :f, #y = :y",
            "ExpressionAttributeNames": {"#s": "state", "#f": "fence", "#y": "type"},
            "ExpressionAttributeValues": {
                ":s": {"S": "COMMITTED"},
                ":f": {"N": "1"},
                ":y": {"S": event_type},
            },
        },
        "resp": None,
    }


def test_progress_reads_commits_and_waits_for_a_line_still_being_written(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    first, second = json.dumps(_commit(1, "job-a", 1, 100.0)), json.dumps(_commit(2, "job-a", 2, 130.0))
    journal.write_text(first + "\n" + second[:40], encoding="utf-8")
    progress = Progress(journal)

    assert progress.poll() == 1
    assert progress.jobs["job-a"].last_commit_t == 100.0
    with journal.open("a", encoding="utf-8") as out:
        out.write(second[40:] + "\n")
    assert progress.poll() == 1
    assert progress.jobs["job-a"].commits == 2 and progress.jobs["job-a"].last_seq == 2
    assert progress.last_move(["job-a", "job-b"]) == 130.0


def test_progress_tells_a_parking_commit_to_its_observers(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps(_commit(1, "job-a", 3, 1.0, "WaitStarted")) + "\n", encoding="utf-8")
    seen: list[tuple[str, str]] = []
    progress = Progress(journal, observers=[lambda job, kind: seen.append((job, kind))])

    progress.poll()

    assert seen == [("job-a", "WaitStarted")]


@pytest.mark.parametrize(("quiet_s", "verdict"), [(59.0, "slow"), (60.0, "stuck")])
def test_job_progress_is_stuck_only_after_a_whole_stall_window(quiet_s: float, verdict: str) -> None:
    job = JobProgress(commits=4, last_commit_t=1000.0, last_event="StepCommitted", last_seq=3)

    assert job.verdict(1000.0 + quiet_s, stall_window_s=60.0) == verdict
    assert verdict in job.describe(1000.0 + quiet_s, 60.0)


def test_workload_happy_plan_draws_what_it_drew_before_the_workload_existed() -> None:
    plans = plan_jobs(20261124, 36)

    assert all(not walks(p) for p in plans)
    # The first job of the CI seed, as the suite planned it before issue 11.
    assert (plans[3].order.variant, plans[3].order.nap_ms, plans[3].signals[0].delay_s) == (
        "reject",
        50,
        2.768,
    )


def test_workload_every_element_switches_on_and_off_by_name() -> None:
    for name in ELEMENTS:
        on = Workload.happy().with_elements(enable=(name,))
        assert on.enabled() == [name]
        assert name not in Workload.full().with_elements(disable=(name,)).enabled()


def test_workload_each_gives_every_job_exactly_its_element() -> None:
    each = ("last_step_cancels", "bare_except", "too_deep_signals")

    plans = plan_jobs(7, 6, each=each)

    assert [walks(p) for p in plans] == [[each[i % 3]] for i in range(6)]


def test_workload_unknown_element_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workload element"):
        Workload.ci().with_elements(enable=("cancel_at_teatime",))
