"""The environment every offline run shares (benchmarks, the chaos run, the golden recorder).

Fake credentials (moto accepts any), a region, no account-based endpoints (moto has none) and no
X-Ray. Applied with ``setdefault``, so a real setting in the environment always wins.
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def use_offline_defaults(**extra: str) -> None:
    """Set what is missing of ``OFFLINE_ENV`` (and ``extra``) in this process's environment."""
    for name, value in {**OFFLINE_ENV, **extra}.items():
        os.environ.setdefault(name, value)
