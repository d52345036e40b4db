"""Where the local stack's DynamoDB and SQS live: moto in-process, a moto server, or LocalStack.

``AETHERIS_BACKEND`` picks one: ``moto`` (default: in-process, nothing to run), ``moto-server``
(a serialized moto server on loopback, for several threads or processes) or ``localstack`` (a
running LocalStack; its endpoint comes from ``localstack-client``, which honours
``LOCALSTACK_HOST``). LocalStack is never started here: it needs Docker or a host install.
"""

from __future__ import annotations

import os
from typing import Literal

Backend = Literal["moto", "moto-server", "localstack"]
BACKENDS: tuple[Backend, ...] = ("moto", "moto-server", "localstack")
LOCALSTACK_ACCOUNT_ID = "000000000000"


def chosen_backend() -> Backend:
    value = os.environ.get("AETHERIS_BACKEND", "moto").strip().lower() or "moto"
    if value not in BACKENDS:  # narrowed below
        raise ValueError(f"AETHERIS_BACKEND must be one of {', '.join(BACKENDS)}, not {value!r}")
    return value


def localstack_endpoint() -> str:
    """The LocalStack edge endpoint for DynamoDB and SQS (they share it)."""
    from localstack_client.config import get_service_endpoint

    dynamodb, sqs = get_service_endpoint("dynamodb"), get_service_endpoint("sqs")
    if dynamodb != sqs:
        raise ValueError(f"LocalStack serves DynamoDB at {dynamodb} and SQS at {sqs}; expected one edge")
    return str(dynamodb)
