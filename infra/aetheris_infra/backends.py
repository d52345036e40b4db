"""Kept for existing imports: backend selection lives in ``aetheris._local.backends``."""

from aetheris._local.backends import (
    BACKENDS,
    LOCALSTACK_ACCOUNT_ID,
    Backend,
    chosen_backend,
    localstack_endpoint,
)

__all__ = ["BACKENDS", "LOCALSTACK_ACCOUNT_ID", "Backend", "chosen_backend", "localstack_endpoint"]
