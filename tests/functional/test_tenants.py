"""Tenants: a caller sees only its own tenant's jobs, and another tenant's job is a 404, never a 403.

The API handler gets HTTP API payload v2 events as API Gateway sends them after its JWT authorizer
verified a token (``requestContext.authorizer.jwt.claims``), built by the local bridge's event
builder, over a ``LocalRuntime`` (moto). Tenant names come from ``aetheris.handlers.api_tenancy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aetheris import App, JobContext, hosting
from aetheris._tenancy import DEFAULT_TENANT
from aetheris.handlers.api import handler
from aetheris.handlers.api_tenancy import NoTenant, caller_tenant
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import http_api_event
from aetheris_infra.lambda_events import LocalLambdaContext

tenant_app = App("tenants")


@tenant_app.job("approve")
def approve(ctx: JobContext, ticket: str) -> str:
    return str(ctx.wait_for_signal("approval"))


class Caller:
    """Requests to the API handler on behalf of one verified identity (``authorizer=None``: none)."""

    def __init__(self, local: LocalRuntime, authorizer: dict[str, Any] | None) -> None:
        self.local, self.authorizer = local, authorizer

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        event = http_api_event(method, path, [("content-type", "application/json")], data)
        if self.authorizer is not None:
            event["requestContext"]["authorizer"] = self.authorizer
        answer = handler(event, LocalLambdaContext(function_name="aetheris-api"))
        return answer["statusCode"], json.loads(answer["body"])

    def start(self, ticket: str, key: str | None = None) -> tuple[int, str]:
        body = {"job_type": "approve", "input": ticket} | ({"idempotency_key": key} if key else {})
        status, started = self.call("POST", "/jobs", body)
        assert status in (200, 201), started
        return status, str(started["job_id"])


def jwt(tenant: str, claim: str = "tenant") -> dict[str, Any]:
    return {"jwt": {"claims": {claim: tenant, "sub": f"user-of-{tenant}"}, "scopes": None}}


@pytest.fixture
def local() -> Iterator[LocalRuntime]:
    with LocalRuntime(tenant_app) as running:
        hosting.use(running.runtimes[0])
        try:
            yield running
        finally:
            hosting.use(None)


def test_tenant_never_reads_lists_signals_or_cancels_another_tenants_job(local: LocalRuntime) -> None:
    acme, globex = Caller(local, jwt("acme")), Caller(local, jwt("globex"))
    _, job_id = acme.start("t-1")
    local.run_until_idle()

    refused = {
        "read": globex.call("GET", f"/jobs/{job_id}"),
        "events": globex.call("GET", f"/jobs/{job_id}/events"),
        "trace": globex.call("GET", f"/jobs/{job_id}/trace"),
        "signal": globex.call("POST", f"/jobs/{job_id}/signals/approval", {"payload": "forged"}),
        "cancel": globex.call("POST", f"/jobs/{job_id}/cancel"),
    }
    listed = {
        name: [j["job_id"] for j in c.call("GET", "/jobs")[1]["jobs"]]
        for name, c in [("acme", acme), ("globex", globex)]
    }
    local.run_until_idle()
    status, job = acme.call("GET", f"/jobs/{job_id}")

    assert {what: (s, body["error"]["code"]) for what, (s, body) in refused.items()} == {
        what: (404, "job_not_found") for what in refused
    }
    assert listed == {"acme": [job_id], "globex": []}
    assert (status, job["status"], job["cancel_requested_at"]) == (200, "WAITING", None)
    assert local.runtimes[0].services.inbox.pending(job_id, "approval", set()) == []


def test_tenant_refusal_reads_exactly_like_a_job_that_does_not_exist(local: LocalRuntime) -> None:
    acme, globex = Caller(local, jwt("acme")), Caller(local, jwt("globex"))
    _, job_id = acme.start("t-2")

    other = globex.call("GET", f"/jobs/{job_id}")
    missing = globex.call("GET", "/jobs/00000000-0000-4000-8000-000000000000")

    assert other[0] == missing[0] == 404
    assert other[1]["error"]["message"].replace(job_id, "ID") == missing[1]["error"]["message"].replace(
        "00000000-0000-4000-8000-000000000000", "ID"
    )


def test_tenant_idempotency_keys_are_per_tenant(local: LocalRuntime) -> None:
    acme, globex = Caller(local, jwt("acme")), Caller(local, jwt("globex"))

    first = acme.start("t-3", key="order-42")
    again = acme.start("t-3", key="order-42")
    theirs = globex.start("t-3", key="order-42")

    assert (first[0], again) == (201, (200, first[1]))
    assert theirs[0] == 201 and theirs[1] != first[1]
    assert globex.call("GET", f"/jobs/{first[1]}")[0] == 404


def test_tenant_default_for_callers_without_an_authorizer_keeps_the_plain_key_derivation(
    local: LocalRuntime,
) -> None:
    anonymous, acme = Caller(local, None), Caller(local, jwt("acme"))

    _, job_id = anonymous.start("t-4", key="k-1")
    in_process = local.runtimes[0].start("approve", "t-4", idempotency_key="k-1")  # unscoped, trusted

    assert in_process.job_id == job_id and not in_process.created
    assert [j["job_id"] for j in anonymous.call("GET", "/jobs")[1]["jobs"]] == [job_id]
    assert acme.call("GET", f"/jobs/{job_id}")[0] == 404


def test_tenant_jwt_without_the_tenant_claim_is_403_no_tenant(local: LocalRuntime) -> None:
    status, body = Caller(local, {"jwt": {"claims": {"sub": "u"}, "scopes": None}}).call("GET", "/jobs")

    assert (status, body["error"]["code"]) == (403, "no_tenant")
    assert "tenant" in body["error"]["message"]


@pytest.mark.parametrize(
    ("authorizer", "claim", "expected"),
    [
        (None, "tenant", DEFAULT_TENANT),
        (jwt("acme"), "tenant", "acme"),
        (jwt("acme", claim="custom:tenant"), "custom:tenant", "acme"),
        ({"lambda": {"tenant": "initech"}}, "tenant", "initech"),
        (
            {"iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/billing/session-77"}},
            "tenant",
            "arn:aws:iam::123456789012:role/billing",
        ),
        (
            {"iam": {"userArn": "arn:aws:iam::123456789012:user/ada"}},
            "tenant",
            "arn:aws:iam::123456789012:user/ada",
        ),
    ],
)
def test_caller_tenant_is_read_from_the_verified_identity(
    authorizer: dict[str, Any] | None, claim: str, expected: str
) -> None:
    event = http_api_event("GET", "/jobs", [], b"")
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer

    assert caller_tenant(event, claim) == expected


@pytest.mark.parametrize("claims", [{}, {"tenant": ""}, {"tenant": 7}, {"tenant": "x" * 300}])
def test_caller_tenant_missing_or_malformed_claim_is_no_tenant(claims: dict[str, Any]) -> None:
    event = http_api_event("GET", "/jobs", [], b"")
    event["requestContext"]["authorizer"] = {"jwt": {"claims": claims}}

    with pytest.raises(NoTenant):
        caller_tenant(event, "tenant")
