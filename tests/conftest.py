"""Suite-wide settings: fake AWS credentials, moto-friendly environment, quiet loggers."""

from __future__ import annotations

import logging
import os

import pytest

# The real AWS settings, kept before they are replaced below: only the opt-in tests against a
# deployed stack (tests/e2e) use them; everything else must never reach an AWS account.
_REAL_AWS_ENV = {
    name: os.environ.get(name)
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )
}

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="Aetheris",
    POWERTOOLS_LOG_LEVEL="WARNING",
)
for noisy in ("werkzeug", "botocore", "aetheris.worker"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def real_aws_environment() -> dict[str, str | None]:
    """The AWS variables as they were before this file replaced them with moto's fakes."""
    return dict(_REAL_AWS_ENV)
