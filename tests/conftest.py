"""Suite-wide settings: fake AWS credentials, moto-friendly environment, quiet loggers."""

from __future__ import annotations

import logging
import os

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
