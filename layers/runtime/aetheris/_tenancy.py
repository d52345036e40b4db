"""Tenants: every job belongs to one, and a caller scoped to a tenant sees only that tenant's jobs.

A job item carries ``tenant`` (set once, at create). Reads, signals and cancels scoped to a tenant
treat another tenant's job exactly as a job that does not exist (the API answers 404, never 403, so
ids do not leak), and a listing scoped to a tenant lists only its jobs. ``tenant=None`` means an
unscoped, trusted caller in the same process (the worker, the sweeper, ``aetheris.testing``). Jobs
created before tenants existed have no ``tenant`` and belong to ``DEFAULT_TENANT``.

Idempotency keys are per tenant: the job id derived from a key lives in a namespace of the tenant's
own, so two tenants using the same business key get two jobs. The default tenant keeps the plain
derivation, so the ids of jobs started before tenants existed do not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

DEFAULT_TENANT: Final = "default"
TENANT_ATTRIBUTE: Final = "tenant"


def tenant_of(item: Mapping[str, Any]) -> str:
    return str(item.get(TENANT_ATTRIBUTE) or DEFAULT_TENANT)


def owns(item: Mapping[str, Any] | None, tenant: str | None) -> bool:
    """Whether a caller scoped to ``tenant`` may see the job ``item`` (``None``: no such job)."""
    return item is not None and (tenant is None or tenant_of(item) == tenant)


def scoped_key(idempotency_key: str, tenant: str | None) -> str:
    """The key as the store keeps it: the default tenant's as given (ids from before tenants stay),
    another tenant's prefixed, so the same key of two tenants names two jobs."""
    if tenant is None or tenant == DEFAULT_TENANT:
        return idempotency_key
    return f"tenant:{tenant}\n{idempotency_key}"


def idempotent_job_id(namespace: uuid.UUID, idempotency_key: str, tenant: str | None) -> str:
    """The job id an idempotency key stands for, within ``tenant``."""
    if tenant is None or tenant == DEFAULT_TENANT:
        return str(uuid.uuid5(namespace, idempotency_key))
    return str(uuid.uuid5(uuid.uuid5(namespace, f"tenant:{tenant}"), idempotency_key))
