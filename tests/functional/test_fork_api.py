"""``POST /jobs/{job_id}/fork`` through the API handler (HTTP API v2 events with a verified JWT),
and ``aetheris fork`` / ``aetheris retry`` through the CLI against the local stack."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from aetheris import App, JobContext, NonRetryableError, StepContext, hosting
from aetheris.testing import LocalRuntime
from tests.functional.test_cli import Run, apps, run, stack, start, until  # noqa: F401 - fixtures
from tests.functional.test_tenants import Caller, jwt

fork_app = App("fork-api")
TOOL_CALLS: list[str] = []


def lookup(sctx: StepContext, ticket: str) -> str:
    return sctx.tool("crm.lookup", lambda: TOOL_CALLS.append(ticket) or f"customer-of-{ticket}")


def refuse(sctx: StepContext, customer: str) -> None:
    raise NonRetryableError(f"no refund for {customer}")


@fork_app.job("refund")
def refund(ctx: JobContext, ticket: str) -> str:
    customer = ctx.step(lookup, ticket)
    ctx.step(refuse, customer)
    return "refunded"


@pytest.fixture
def local() -> Iterator[LocalRuntime]:
    TOOL_CALLS.clear()
    with LocalRuntime(fork_app) as running:
        hosting.use(running.runtimes[0])
        try:
            yield running
        finally:
            hosting.use(None)


def _failed(local: LocalRuntime, caller: Caller) -> str:
    status, started = caller.call("POST", "/jobs", {"job_type": "refund", "input": "t-1"})
    assert status == 201, started
    local.wait(started["job_id"])
    return str(started["job_id"])


def test_fork_route_starts_a_new_job_of_the_callers_tenant_linked_to_the_old_one(local: LocalRuntime) -> None:
    acme = Caller(local, jwt("acme"))
    old = _failed(local, acme)

    status, forked = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 1})
    local.wait(forked["job_id"])
    _, detail = acme.call("GET", f"/jobs/{forked['job_id']}")
    _, trace = acme.call("GET", f"/jobs/{forked['job_id']}/trace")
    again = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 1, "idempotency_key": "k1"})
    repeat = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 1, "idempotency_key": "k1"})
    other = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 0, "idempotency_key": "k1"})

    assert status == 201 and forked["job_id"] != old
    assert detail["forked_from"] == {"job_id": old, "seq": 1, "copied_through": 1, "via": "fork"}
    assert detail["input"] == "t-1" and detail["status"] == "FAILED"  # the same code fails the same way
    assert trace["forked_from"]["job_id"] == old
    assert TOOL_CALLS == ["t-1"]  # the lookup recorded at seq 1 was not made again
    assert again[0] == 201 and repeat == (200, again[1])
    assert other[0] == 409 and other[1]["error"]["code"] == "idempotency_conflict"


def test_retry_route_without_seq_and_its_refusals(local: LocalRuntime) -> None:
    acme = Caller(local, jwt("acme"))
    old = _failed(local, acme)

    status, retried = acme.call("POST", f"/jobs/{old}/fork", {})
    local.wait(retried["job_id"])
    _, detail = acme.call("GET", f"/jobs/{retried['job_id']}")
    not_failed = acme.call("POST", f"/jobs/{retried['job_id']}/fork", {"budget": {"max_steps": 0}})

    assert status == 201
    assert detail["forked_from"]["via"] == "retry" and detail["forked_from"]["job_id"] == old
    assert TOOL_CALLS == ["t-1"]
    assert not_failed[0] == 422 and not_failed[1]["error"]["code"] == "validation_error"


def test_fork_of_another_tenants_or_an_unknown_job_is_404_and_a_bad_seq_4xx(local: LocalRuntime) -> None:
    acme, globex = Caller(local, jwt("acme")), Caller(local, jwt("globex"))
    old = _failed(local, acme)

    theirs = globex.call("POST", f"/jobs/{old}/fork", {"at_seq": 1})
    retry_theirs = globex.call("POST", f"/jobs/{old}/fork", {})
    unknown = acme.call("POST", "/jobs/no-such-job/fork", {"at_seq": 1})
    past = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 99})
    negative = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": -1})
    extra = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": 1, "seq": 2})
    boolean = acme.call("POST", f"/jobs/{old}/fork", {"at_seq": True})

    for status, body in (theirs, retry_theirs, unknown):
        assert status == 404 and body["error"]["code"] == "job_not_found"
    assert past[0] == 409 and past[1]["error"]["code"] == "invalid_seq"  # the log may grow: a conflict
    assert negative[0] == 422 and extra[0] == 422 and boolean[0] == 422


def test_cli_fork_and_retry_print_the_new_job(run: Run) -> None:  # noqa: F811 - fixture
    greeted = start(run, "cli.greet", "ada")
    until(run, greeted, "COMPLETED")
    failed = start(run, "cli.fail", "nope")
    until(run, failed, "FAILED")

    code, out, err = run("--json", "fork", greeted, "--at", "1")
    forked = json.loads(out)
    done = until(run, forked["job_id"], "COMPLETED")
    retried_code, retried_out, _ = run("retry", failed)
    refused = run("--json", "retry", greeted)
    bad_seq = run("fork", greeted, "--at", "999")

    assert code == 0, err
    assert done["forked_from"]["job_id"] == greeted and done["result"] == "HELLO ADA"
    assert retried_code == 0 and "new job " in retried_out
    new_id = retried_out.split("new job ")[1].split()[0]
    shown = run("status", new_id)
    assert shown[0] == 0 and f"{failed} at seq" in shown[1] and "retry" in shown[1]
    assert refused[0] == 4 and "not_retryable" in refused[1] + refused[2]
    assert bad_seq[0] == 4 and "invalid_seq" in bad_seq[2]


def test_cli_start_budget_is_the_jobs_own(run: Run) -> None:  # noqa: F811 - fixture
    code, out, err = run("--json", "start", "cli.greet", "--input", '"bo"', "--budget", '{"max_steps": 1}')
    job = until(run, json.loads(out)["job_id"], "FAILED")
    malformed = run("start", "cli.greet", "--input", '"bo"', "--budget", '{"max_steps": "one"}')

    assert code == 0, err
    assert job["budget"]["max_steps"] == 1 and job["error"]["type"] == "aetheris.budget.BudgetExceeded"
    assert malformed[0] == 4 and "validation_error" in malformed[2]
