"""The caller's tenant, read from the identity API Gateway verified (HTTP API payload v2).

``requestContext.authorizer`` says who called, and this module names the tenant from it:

* a JWT authorizer (``ApiAuth=JWT``): the claim ``Settings.tenant_claim`` (``AETHERIS_TENANT_CLAIM``,
  default ``tenant``; e.g. ``custom:tenant`` for a Cognito attribute) — a token without it is refused;
* a Lambda authorizer: the same key of its context;
* IAM (``ApiAuth=AWS_IAM``): the principal — a role for an assumed-role session (its session name
  varies per session, the role does not), else the user's ARN;
* no authorizer (``ApiAuth=NONE``, the local stack): ``DEFAULT_TENANT``, for single-tenant use.

Only API Gateway writes ``requestContext``; a client cannot set it. Rejected: a tenant header or
parameter (a client could name any tenant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from aetheris._tenancy import DEFAULT_TENANT
from aetheris.errors import AetherisError

_ASSUMED_ROLE: Final = re.compile(r"^arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([^/]+)/[^/]+$")
_MAX_TENANT_CHARS: Final = 256


class NoTenant(AetherisError):
    """The caller is authenticated, but its identity names no tenant."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the caller's identity names no tenant: {reason}")


def tenant_of_request(event: Any) -> str:
    """The tenant of the request a Powertools resolver or router is handling (``current_event``)."""
    from aetheris import hosting

    return caller_tenant(event.raw_event, hosting.runtime().settings.tenant_claim)


def caller_tenant(event: Mapping[str, Any], claim: str) -> str:
    """The tenant of the caller of ``event`` (a payload v2 event), or ``NoTenant``."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if "jwt" in authorizer:
        return _named(((authorizer["jwt"] or {}).get("claims") or {}).get(claim), f"no {claim!r} claim")
    if "lambda" in authorizer:
        return _named((authorizer["lambda"] or {}).get(claim), f"no {claim!r} in the authorizer's context")
    if "iam" in authorizer:
        iam = authorizer["iam"] or {}
        arn = str(iam.get("userArn") or "")
        role = _ASSUMED_ROLE.match(arn)
        principal = f"arn:{role[1]}:iam::{role[2]}:role/{role[3]}" if role else arn
        return _named(principal, "no principal ARN")
    return DEFAULT_TENANT


def _named(value: Any, missing: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NoTenant(missing)
    if len(value) > _MAX_TENANT_CHARS:
        raise NoTenant(f"a tenant is at most {_MAX_TENANT_CHARS} characters")
    return value
