"""``aetheris.testing.replay`` takes every form the testing API and the CLI hand out.

One job runs on ``LocalRuntime`` (a tool call, a signal, a timer); its record is then replayed as
a ``JobHistory``, its dict, a file (``str`` and ``Path``), and the event list ``local.events``
returns (objects, and JSON dicts as ``GET /jobs/{id}/events`` serves them). Replaying calls no tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aetheris import App, Event, JobContext, StepContext
from aetheris.history import JobHistory
from aetheris.testing import LocalRuntime, replay

app = App("replay-forms")
changed = App("replay-forms")
calls: list[str] = []


class Order(BaseModel):
    order_id: str


def _ship(order_id: str) -> str:
    calls.append(order_id)
    return f"shipped {order_id}"


def ship(sctx: StepContext, order: Order) -> str:
    return sctx.tool("warehouse.ship", _ship, order.order_id)


def ship_faster(sctx: StepContext, order: Order) -> str:
    return "express"


@app.job("ship")
def ship_job(ctx: JobContext, order: Order) -> dict[str, Any]:
    text = ctx.step(ship, order)
    ok = ctx.wait_for_signal("confirm")
    ctx.sleep(timedelta(seconds=30))
    return {"text": text, "ok": ok}


@changed.job("ship")
def ship_job_changed(ctx: JobContext, order: Order) -> dict[str, Any]:
    return {"text": ctx.step(ship_faster, order), "ok": True}


ORDER = Order(order_id="o-7")


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[JobHistory, list[Event]]]:
    with LocalRuntime(app) as local:
        job_id = local.start("ship", ORDER.model_dump())
        local.signal(job_id, "confirm", True)
        assert local.wait(job_id).status == "COMPLETED"
        yield local.export(job_id), local.events(job_id)


def _replays_cleanly(history: Any, **kwargs: Any) -> None:
    before = len(calls)
    report = replay(app, history, **kwargs)
    assert report.consistent and report.reached_end and report.output_matches
    assert len(calls) == before  # no tool was called


def test_replay_job_history_is_consistent(recorded: tuple[JobHistory, list[Event]]) -> None:
    _replays_cleanly(recorded[0])


def test_replay_history_dict_is_consistent(recorded: tuple[JobHistory, list[Event]]) -> None:
    _replays_cleanly(recorded[0].model_dump(mode="json"))


def test_replay_history_file_as_str_and_path_is_consistent(
    recorded: tuple[JobHistory, list[Event]], tmp_path: Path
) -> None:
    recorded[0].dump(tmp_path / "history.json")

    _replays_cleanly(tmp_path / "history.json")
    _replays_cleanly(str(tmp_path / "history.json"))


def test_replay_event_list_with_input_is_consistent(recorded: tuple[JobHistory, list[Event]]) -> None:
    _replays_cleanly(recorded[1], input=ORDER)
    _replays_cleanly(recorded[1], input={"order_id": "o-7"})


def test_replay_event_dicts_as_the_api_serves_them_are_consistent(
    recorded: tuple[JobHistory, list[Event]],
) -> None:
    served = json.loads(json.dumps([event.model_dump(mode="json") for event in recorded[1]]))

    _replays_cleanly(served, input=ORDER)


def test_replay_event_list_against_changed_code_names_the_divergence(
    recorded: tuple[JobHistory, list[Event]],
) -> None:
    report = replay(changed, recorded[1], input=ORDER)

    assert not report.consistent
    assert report.divergence is not None and "ship" in str(report.divergence)


def test_replay_event_list_alone_reads_the_input_from_job_created(
    recorded: tuple[JobHistory, list[Event]],
) -> None:
    assert recorded[1][0].input is not None and json.loads(recorded[1][0].input) == {"order_id": "o-7"}

    _replays_cleanly(recorded[1])


def test_replay_event_list_recorded_without_input_says_to_pass_it(
    recorded: tuple[JobHistory, list[Event]],
) -> None:
    older = [recorded[1][0].model_copy(update={"input": None}), *recorded[1][1:]]  # before JobCreated had it

    with pytest.raises(TypeError, match=r"needs the job's input: pass input="):
        replay(app, older)


def test_replay_event_list_without_job_created_is_refused(recorded: tuple[JobHistory, list[Event]]) -> None:
    with pytest.raises(ValueError, match="no JobCreated event"):
        replay(app, recorded[1][1:], input=ORDER)


def test_replay_history_with_input_is_refused(recorded: tuple[JobHistory, list[Event]]) -> None:
    with pytest.raises(TypeError, match="only for an event list"):
        replay(app, recorded[0], input=ORDER)
