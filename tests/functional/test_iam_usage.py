"""Least privilege, checked from the other side: every AWS call each handler really makes is one its
role in ``template.yaml`` grants, on the resource it names.

A ``LocalStack`` runs every handler on a thread of its own (step workers, the signal poller, the
sweeper, the HTTP API's request threads); a botocore hook on the shared clients records each call
as the IAM action it needs (a transaction as its items' actions, a batch as its single action) and
the logical id of its table, index, queue or bucket, attributed by thread to the function whose
role signs it on AWS. The SQS pollers stand for Lambda's event source mappings, which use the
function's role. The template side (no wildcards, nothing more than this) is tests/infra's.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, JobContext, StepContext
from aetheris_infra.local_stack import LocalStack
from aetheris_infra.template import load_template
from tests.infra import iam

BIG = "x" * (40 * 1024)  # over the 32 KiB offload threshold: the value goes to S3
_BATCH_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage"}
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}

usage_app = App("iam-usage")


def lookup(sctx: StepContext, order_id: str) -> str:
    return sctx.tool("crm.lookup", lambda oid: f"order {oid}", order_id)


@usage_app.job("usage.full")
def full(ctx: JobContext, payload: str) -> str:
    ctx.step(lookup, "o-1")
    ctx.sleep(timedelta(seconds=1))
    approval = ctx.wait_for_signal("approval", timeout=timedelta(hours=1))
    return f"{approval}:{payload}"


handed_out: list[str] = []


def hand_out(sctx: StepContext, token: str) -> None:
    handed_out.append(token)


@usage_app.job("usage.callback")
def with_callback(ctx: JobContext, payload: str) -> Any:
    cb = ctx.callback("approval", timeout=timedelta(hours=1))
    ctx.step(hand_out, cb.token)
    return cb.wait()


@usage_app.job("usage.parked")
def parked(ctx: JobContext, payload: str) -> Any:
    return ctx.wait_for_signal("never", timeout=timedelta(hours=1))


class Recorder:
    """(action, resource) pairs per function, from the calls botocore is about to make."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names  # physical name or queue URL -> logical id
        self.used: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
        self._lock = threading.Lock()

    def function(self) -> str:
        thread = threading.current_thread().name
        if thread.startswith("local-worker"):
            return "WorkerFunction"
        return {"local-signals": "SignalsFunction", "local-sweeper": "SweeperFunction"}.get(
            thread, "ApiFunction"
        )

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service, operation = model.service_model.endpoint_prefix, model.name
        pairs: list[tuple[str, str]] = []
        if service == "dynamodb" and operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                pairs.append((f"dynamodb:{_TRANSACT_ACTIONS[kind]}", self.names[body["TableName"]]))
        elif service == "dynamodb":
            table = self.names[params["TableName"]]
            pairs.append(
                (
                    f"dynamodb:{operation}",
                    f"{table}/index/{params['IndexName']}" if "IndexName" in params else table,
                )
            )
        elif service == "sqs":
            pairs.append((f"sqs:{_BATCH_ACTIONS.get(operation, operation)}", self.names[params["QueueUrl"]]))
        elif service == "s3":
            action = "GetObject" if operation == "HeadObject" else operation
            pairs.append((f"s3:{action}", f"{self.names[params['Bucket']]}/*"))
        else:
            pairs.append((f"{service}:{operation}", "?"))
        with self._lock:
            self.used[self.function()].update(pairs)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[LocalStack, Recorder]]:
    with LocalStack(usage_app, workers=1, sweep_every=timedelta(milliseconds=200)) as stack:
        assert stack.resources is not None
        recorder = Recorder({value: key for key, value in stack.resources.physical.items()})
        services = stack.runtimes[0].services
        clients = {services.jobs.table.client, services.queue.client, services.payloads.s3}
        for client in clients:
            assert client is not None
            client.meta.events.register("before-parameter-build.*.*", recorder)
        yield stack, recorder


def call(
    stack: LocalStack, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        stack.api_url + path,
        data=data,
        method=method,
        headers=headers or {"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def until(stack: LocalStack, job_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        _, job = call(stack, "GET", f"/jobs/{job_id}")
        if job.get("status") in statuses:
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.05)  # polling over HTTP: the deadline bounds the test


def test_every_aws_call_of_every_handler_is_granted_by_its_role(
    recorded: tuple[LocalStack, Recorder],
) -> None:
    stack, recorder = recorded
    _, started = call(stack, "POST", "/jobs", {"job_type": "usage.full", "input": BIG})
    _, other = call(stack, "POST", "/jobs", {"job_type": "usage.parked", "input": "p"})
    job_id = started["job_id"]
    until(stack, job_id, "WAITING")
    assert (
        call(stack, "POST", f"/jobs/{job_id}/signals/approval", {"payload": "ok", "signal_id": "s-1"})[0]
        == 202
    )
    until(stack, job_id, "COMPLETED")
    again = call(stack, "POST", f"/jobs/{job_id}/signals/approval", {"payload": "ok", "signal_id": "s-1"})
    until(stack, other["job_id"], "WAITING")
    _, answered = call(stack, "POST", "/jobs", {"job_type": "usage.callback", "input": "c"})
    until(stack, answered["job_id"], "WAITING")
    token = {"content-type": "application/json", "authorization": f"Callback {handed_out[-1]}"}
    callback = [call(stack, "POST", "/callbacks/succeed", {"ok": n}, headers=token)[0] for n in (1, 1, 2)]
    until(stack, answered["job_id"], "COMPLETED")
    cancelled = call(stack, "POST", f"/jobs/{other['job_id']}/cancel")
    until(stack, other["job_id"], "CANCELLED")
    for path in (
        "/jobs",
        "/jobs?status=COMPLETED",
        f"/jobs/{job_id}/events?limit=2",
        f"/jobs/{job_id}/trace",
    ):
        assert call(stack, "GET", path)[0] == 200, path
    time.sleep(0.5)  # the sweeper's schedule (every 200 ms) runs at least twice more

    template = load_template()
    granted = {
        f: iam.grants(iam.role_of(template, f))
        for f in template.resources_of_type("AWS::Serverless::Function")
    }
    used = dict(recorder.used)

    assert again[0] == 202 and cancelled[0] == 200
    assert callback == [202, 202, 403]  # answered, the same answer again, another answer refused
    assert set(used) == set(granted), used  # every function made calls
    assert {f: sorted(pairs - granted[f]) for f, pairs in used.items()} == {f: [] for f in used}
    assert ("s3:PutObject", "PayloadBucket/*") in used["ApiFunction"]  # the big input was offloaded
    assert ("dynamodb:GetItem", "InboxTable") in used["ApiFunction"]  # the retried signal was checked
