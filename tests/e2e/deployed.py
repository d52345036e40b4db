"""A deployed stack as the end-to-end tests see it: its outputs, and an HTTP client for its API.

Credentials come from the environment as it was before ``tests/conftest.py`` replaced it with
moto's fakes (access keys, or ``AWS_PROFILE``, or the default profile). Requests are signed with
SigV4 (service ``execute-api``) when the stack was deployed with ``ApiAuth=AWS_IAM``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError

FAKE_ACCESS_KEY = "testing"  # what the rest of the suite runs with: never a real account


def real_session(original: Mapping[str, str | None]) -> boto3.Session | None:
    """A session on real credentials, or ``None`` if none resolve (the e2e tests are then skipped)."""
    region = original.get("AWS_REGION") or original.get("AWS_DEFAULT_REGION")
    key, secret = original.get("AWS_ACCESS_KEY_ID"), original.get("AWS_SECRET_ACCESS_KEY")
    try:
        if key and secret:
            session = boto3.Session(
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                aws_session_token=original.get("AWS_SESSION_TOKEN"),
                region_name=region,
            )
        else:
            # An explicit profile makes botocore ignore the (fake) credentials in the environment.
            session = boto3.Session(profile_name=original.get("AWS_PROFILE") or "default", region_name=region)
        credentials = session.get_credentials()
    except BotoCoreError:
        return None
    if credentials is None or credentials.access_key == FAKE_ACCESS_KEY:
        return None
    return session


@dataclass(frozen=True)
class Stack:
    name: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    @classmethod
    def describe(cls, session: boto3.Session, name: str) -> Stack:
        (stack,) = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        return cls(
            name=name,
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
        )

    @property
    def iam_auth(self) -> bool:
        return self.parameters.get("ApiAuth") == "AWS_IAM"


@dataclass
class Answer:
    status: int
    body: Any


class DeployedApi:
    def __init__(self, session: boto3.Session, stack: Stack) -> None:
        self.session = session
        self.base = stack.outputs["ApiUrl"].rstrip("/")
        self.sign = stack.iam_auth
        self.region = session.region_name or "us-east-1"

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json", "accept": "application/json"}
        url = self.base + path
        if self.sign:
            credentials = self.session.get_credentials()
            assert credentials is not None
            request = AWSRequest(method=method, url=url, data=data, headers=headers)
            SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
            headers = dict(request.headers.items())
        http = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(http, timeout=30) as response:
                return Answer(response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                parsed = json.loads(text or b"null")
            except ValueError:
                parsed = text.decode(errors="replace")
            return Answer(error.code, parsed)

    def poll(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 180.0
    ) -> dict[str, Any]:
        """GET the job until ``done(job)`` holds; fails with the last state seen at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.call("GET", f"/jobs/{job_id}")
            assert answer.status == 200, answer
            job: dict[str, Any] = answer.body
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not get there within {timeout} s: {job}")
            time.sleep(1.0)  # between polls only; the deadline decides
