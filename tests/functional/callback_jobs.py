"""Jobs and HTTP helpers shared by the callback tests: a job that mails its callback's token (the
mail step counts its real executions and keeps every token it was given) and waits for it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from aetheris import App, CallbackFailed, JobContext, StepContext, WaitTimeout, hosting
from aetheris.callbacks import Grant, sign
from aetheris.handlers.api import handler
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import http_api_event
from aetheris_infra.lambda_events import LocalLambdaContext

KID, KEY = "k1", "test-key-0123456789-0123456789-0123456789"
KEYS = json.dumps({"kid": KID, "key": KEY})


class Mailbox:
    def __init__(self) -> None:
        self.tokens: list[str] = []  # every token the mail effect was called with, in order
        self.calls: Counter[str] = Counter()
        self.answer_inside: Any = None  # set: the mail step answers the callback itself, at once

    @property
    def token(self) -> str:
        return self.tokens[-1]


def build_app(mailbox: Mailbox) -> App:
    app = App("callbacks")

    def send_mail(token: str) -> str:
        mailbox.calls["mail"] += 1
        mailbox.tokens.append(token)
        if mailbox.answer_inside is not None:  # a webhook that calls back before the step returns
            status, body = answer(token, mailbox.answer_inside)
            assert status == 202, body
        return "sent"

    def mail(sctx: StepContext, token: str) -> str:
        return str(sctx.tool("mail.send", send_mail, token))

    def remember(sctx: StepContext, token: str) -> str:
        return token

    @app.job("approve")
    def approve(ctx: JobContext, pause_seconds: int) -> Any:
        cb = ctx.callback("approval", timeout=timedelta(hours=1))
        ctx.step(mail, cb.token)
        if pause_seconds:
            ctx.sleep(timedelta(seconds=pause_seconds))
        try:
            answered = cb.wait()
        except CallbackFailed as failed:
            return {"failed": [failed.code, failed.message]}
        except WaitTimeout:
            return {"timed_out": True}
        # The token on replay (here, in a later tick) is the one the mail step got.
        return {"answer": answered, "replayed_token": ctx.step(remember, cb.token, name="remember")}

    @app.job("forgets")
    def forgets(ctx: JobContext, _: int) -> str:
        cb = ctx.callback("approval", timeout=timedelta(hours=1))
        ctx.step(mail, cb.token)
        return "done without waiting"

    return app


def call(method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """The API handler, called with the HTTP API v2 event API Gateway sends (no authorizer: these
    routes have none)."""
    headers = [("content-type", "application/json")]
    if token is not None:
        headers.append(("authorization", f"Callback {token}"))
    data = b"" if body is None else json.dumps(body).encode()
    event = http_api_event(method, path, headers, data)
    reply = handler(event, LocalLambdaContext(function_name="aetheris-api"))
    return int(reply["statusCode"]), json.loads(reply["body"])


def answer(token: str, payload: Any) -> tuple[int, Any]:
    return call("POST", "/callbacks/succeed", payload, token)


def refuse(token: str, error: dict[str, Any]) -> tuple[int, Any]:
    return call("POST", "/callbacks/fail", {"error": error}, token)


def forge(grant: Grant, kid: str = KID, key: str = KEY) -> str:
    return sign(grant, kid, key.encode())


@contextmanager
def running(app: App, **overrides: Any) -> Iterator[LocalRuntime]:
    with LocalRuntime(app, overrides={"callback_keys": KEYS, **overrides}) as local:
        hosting.use(local.runtimes[0])
        try:
            yield local
        finally:
            hosting.use(None)


def written(local: LocalRuntime, job_id: str) -> tuple[int, int]:
    """(inbox items of the job, messages on the signal queue): what an answer writes."""
    items = local.dynamodb.query(
        TableName=local.stack.inbox_table,
        KeyConditionExpression="pk = :j",
        ExpressionAttributeValues={":j": {"S": job_id}},
    )["Items"]
    attributes = local.sqs.get_queue_attributes(
        QueueUrl=local.stack.signal_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return len(items), sum(int(v) for v in attributes.values())
