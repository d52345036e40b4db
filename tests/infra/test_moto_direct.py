"""``moto_direct``: which calls skip the HTTP layer, and that everything hooked on botocore still works.

Its answers are compared with the HTTP path's in ``test_moto_differential.py``; here: a handler on a
wire-level event sends calls back over the wire (fault-injection tests rely on it), meters on the
events botocore emits around a call still count every call, and ``LocalRuntime`` answers from
moto directly by default but not with ``direct=False`` or ``AETHERIS_MOTO_DIRECT=0``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.models import botocore_stubber

from aetheris import App, JobContext, StepContext
from aetheris._local import moto_direct
from aetheris.testing import LocalRuntime


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls that reached moto's HTTP stubber, by service host."""
    seen: Counter[str] = Counter()
    process_request = botocore_stubber.process_request

    def counted(request: Any) -> Any:
        seen[str(request.url).split("//")[-1].split(".")[0]] += 1
        return process_request(request)

    monkeypatch.setattr(botocore_stubber, "process_request", counted)
    return seen


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        db = moto_direct.attach(boto3.client("dynamodb", region_name="us-east-1"))
        db.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        yield db


def test_a_handler_on_a_wire_event_sends_calls_over_the_wire_until_it_is_gone(
    table: Any, wire: Counter[str]
) -> None:
    table.put_item(TableName="t", Item={"pk": {"S": "a"}})
    assert wire["dynamodb"] == 0

    retries: list[int] = []

    def needs_retry(attempts: int, **_: Any) -> None:
        retries.append(attempts)

    table.meta.events.register("needs-retry.dynamodb.PutItem", needs_retry)
    table.put_item(TableName="t", Item={"pk": {"S": "b"}})
    table.get_item(TableName="t", Key={"pk": {"S": "b"}})  # (any operation of the service, to be safe)
    assert wire["dynamodb"] == 2 and retries == [1]

    table.meta.events.unregister("needs-retry.dynamodb.PutItem", needs_retry)
    table.put_item(TableName="t", Item={"pk": {"S": "c"}})
    assert wire["dynamodb"] == 2

    def before_send(**_: Any) -> None:
        return None

    table.meta.events.register_first("before-send.dynamodb", before_send)
    assert table.get_item(TableName="t", Key={"pk": {"S": "c"}})["Item"] == {"pk": {"S": "c"}}
    assert wire["dynamodb"] == 3


def test_meters_on_the_events_around_a_call_count_every_direct_call(table: Any, wire: Counter[str]) -> None:
    counted: Counter[str] = Counter()

    def provided(model: Any, **_: Any) -> None:
        counted[f"params:{model.name}"] += 1

    def after(model: Any, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        counted[f"after:{model.name}:{http_response.status_code}"] += 1

    table.meta.events.register("provide-client-params.*.*", provided)
    table.meta.events.register("after-call", after)
    table.put_item(TableName="t", Item={"pk": {"S": "a"}})
    with pytest.raises(table.exceptions.ConditionalCheckFailedException):
        table.put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
    assert counted == {"params:PutItem": 2, "after:PutItem:200": 1, "after:PutItem:400": 1}
    assert wire["dynamodb"] == 0


def test_an_invalid_parameter_is_refused_by_botocore_before_moto_sees_it(table: Any) -> None:
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        table.put_item(TableName="t", Item={"pk": {"S": 1}})


def _app() -> App:
    app = App("direct")

    def body(sctx: StepContext, i: int) -> int:
        return i

    @app.job("steps")
    def steps(ctx: JobContext, n: int) -> int:
        return sum(ctx.step(body, i) for i in range(n))

    return app


def _run_job(local: LocalRuntime) -> None:
    job = local.start("steps", 3)
    assert local.wait(job).status.value == "COMPLETED"


def test_local_runtime_answers_from_moto_directly_by_default(wire: Counter[str]) -> None:
    with LocalRuntime(_app()) as local:
        wire.clear()  # how the stack was made (tables, queues, bucket) does not matter here
        _run_job(local)
    assert wire["dynamodb"] == 0 and wire["sqs"] == 0


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_local_runtime_goes_over_the_wire_when_told_to(
    how: str, wire: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "environment":
        monkeypatch.setenv("AETHERIS_MOTO_DIRECT", "0")
    with LocalRuntime(_app(), direct=False if how == "argument" else None) as local:
        _run_job(local)
    assert wire["dynamodb"] > 5 and wire["sqs"] > 5
