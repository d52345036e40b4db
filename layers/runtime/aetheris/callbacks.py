"""Scoped callback tokens: a credential that answers exactly one wait of one job, and nothing else.

``cb = ctx.callback("approval", timeout=timedelta(days=2))`` gives the job a ``Callback``: a token
(and a ready link to the approval page) to hand to a human or a webhook, then ``cb.wait()`` parks
the job until the token is used — ``POST /callbacks/succeed`` with a payload, ``POST
/callbacks/fail`` with an error — or until it expires (``WaitTimeout``).

A token is ``v1.<kid>.<payload>.<signature>``: the payload (base64url JSON) names the tenant, the
job, the wait, its name and its expiry; the signature is HMAC-SHA256 over the first three parts
with the key ``kid`` names. Tokens are verified, never stored: any key of the keyring (the current
one, and the previous one during a rotation) verifies, only the current one signs.

The wait a token answers is ``<position>.<index>``: the callback was the ``index``-th deterministic
value asked for before operation ``position``. Its expiry is counted from the ``at`` of the job's
last committed event, not from the wall clock, so a tick that dies after handing the token out and
is run again makes the very same grant (and, with the same key, the same token). The value is
recorded with the next operation, like ``ctx.now()``; replay returns it.

Answers travel the signal path (API → signal queue → inbox → wake) as a signal named
``callback/<wait>`` with the signal id ``callback/<wait>``: no signal route can send that name (a
``/`` is not allowed in it), the one wait of that callback is the only one that consumes it, and a
second answer with the same id is the first one again, or refused.

Rejected: a token recorded in the log (traces and event pages would show it); a random wait id made
when the token is (a rerun tick would mint a second token while the first was already mailed); the
wall clock for the expiry (same reason).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from aetheris._tenancy import tenant_of
from aetheris.errors import AetherisError

if TYPE_CHECKING:
    from aetheris._engine.replay import Replay
    from aetheris.config import Settings

VERSION: Final = "v1"
SIGNAL_PREFIX: Final = "callback/"
KID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TOKEN_CHARS: Final = 2048
MIN_TIMEOUT: Final = timedelta(seconds=1)
MAX_TIMEOUT: Final = timedelta(days=366)
# How long a keyring read from Secrets Manager is trusted before it is read again (a rotation
# reaches every function within this), and how often an unknown key id may force an early read.
KEYS_MAX_AGE: Final = timedelta(minutes=5)
REFRESH_EVERY: Final = timedelta(seconds=30)


class CallbackFailed(AetherisError):
    """The callback was answered with a failure (``POST /callbacks/fail``); the job may catch it."""

    def __init__(self, callback: str, code: str, message: str) -> None:
        self.callback, self.code, self.message = callback, code, message
        super().__init__(f"callback {callback!r} was answered with a failure: {code}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.callback, self.code, self.message))


class CallbackKeysUnavailable(AetherisError):
    """The callback keyring could not be read (Secrets Manager, or ``AETHERIS_CALLBACK_KEYS``)."""


class CallbackKeys(BaseModel):
    """The keyring as stored: the JSON of the template's secret, or of ``AETHERIS_CALLBACK_KEYS``.

    Flat, so that CloudFormation can generate it (``GenerateSecretString`` fills one top-level key).
    To rotate: move ``kid``/``key`` to ``previous_kid``/``previous_key`` and put a new pair in
    their place; once the longest callback timeout has passed, drop the previous pair.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kid: str = Field(pattern=KID_PATTERN)
    key: SecretStr = Field(min_length=32)
    previous_kid: str | None = Field(default=None, pattern=KID_PATTERN)
    previous_key: SecretStr | None = Field(default=None, min_length=32)

    @model_validator(mode="after")
    def _previous_is_a_pair(self) -> CallbackKeys:
        if (self.previous_kid is None) != (self.previous_key is None):
            raise ValueError("previous_kid and previous_key go together")
        if self.previous_kid == self.kid:
            raise ValueError("the previous key needs a kid of its own")
        return self

    def verifying(self, kid: str) -> bytes | None:
        if kid == self.kid:
            return self.key.get_secret_value().encode()
        if kid == self.previous_kid and self.previous_key is not None:
            return self.previous_key.get_secret_value().encode()
        return None


class Grant(BaseModel):
    """What a token authorises: answering wait ``w`` (named ``n``) of job ``j`` of tenant ``t``
    until ``e`` (seconds since the epoch)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    t: str = Field(min_length=1, max_length=256)
    j: str = Field(pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
    w: str = Field(pattern=r"^[0-9]{1,9}\.[0-9]{1,6}$")
    n: str = Field(pattern=r"^[A-Za-z0-9_.\-/]{1,100}$")
    e: int = Field(ge=0)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.e, UTC)

    @property
    def position(self) -> int:
        return int(self.w.split(".")[0])

    @property
    def signal(self) -> str:
        """The signal name (and signal id) an answer to this wait travels under."""
        return SIGNAL_PREFIX + self.w


class CallbackRefused(AetherisError):
    """The token does not authorise this answer now; ``code`` says why (``callback_malformed``,
    ``callback_invalid``, ``callback_wrong_job``, ``callback_wrong_wait``, ``callback_used``,
    ``callback_closed``, ``callback_expired``: see ``aetheris._callback_answers``). Nothing was
    written."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"{code}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


class TokenRefused(AetherisError):
    """A token that is no token (``callback_malformed``) or not signed by a key we hold
    (``callback_invalid``)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason
        super().__init__(reason)


# -- tokens ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _signature(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def sign(grant: Grant, kid: str, key: bytes) -> str:
    payload = _b64(json.dumps(grant.model_dump(), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{VERSION}.{kid}.{payload}"
    return f"{signed}.{_b64(_signature(key, signed))}"


def verify(token: str, key_of: Callable[[str], bytes | None]) -> Grant:
    """The grant ``token`` carries, if one of our keys signed it; ``TokenRefused`` otherwise.

    The signature is checked (in constant time) before the payload is read.
    """
    parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
    if len(parts) != 4 or parts[0] != VERSION or not parts[1] or len(parts[1]) > 64:
        raise TokenRefused("callback_malformed", "this is not a callback token (v1.<kid>.<payload>.<sig>)")
    _, kid, payload, signature = parts
    try:
        given = _unb64(signature)
        _unb64(payload)
    except (ValueError, binascii.Error):
        raise TokenRefused("callback_malformed", "the token's parts are not base64url") from None
    key = key_of(kid) if all(c in _B64URL for c in kid) else None
    if key is None:
        raise TokenRefused("callback_invalid", "the token is not signed by a key this service holds")
    if not hmac.compare_digest(given, _signature(key, f"{VERSION}.{kid}.{payload}")):
        raise TokenRefused("callback_invalid", "the token's signature does not match: it was altered")
    try:
        return Grant.model_validate_json(_unb64(payload))
    except (ValidationError, ValueError):  # signed by us, so only an older, other format gets here
        raise TokenRefused("callback_malformed", "the token's payload is not a grant") from None


# -- keys ------------------------------------------------------------------------------------------


class KeySource:
    """The keyring of one configuration: from ``callback_keys`` (the environment), the Secrets
    Manager secret ``callback_secret`` (read through Powertools Parameters), or — with neither, for
    single-process local stacks only — a key made for this process.

    A keyring read from the secret is kept ``KEYS_MAX_AGE`` by the runtime's clock (so a rotation
    reaches every function within it); a token whose kid it does not know has it read again, at
    most once per ``REFRESH_EVERY`` (a rotation is seen at once, a flood of made-up kids is not a
    flood of reads).
    """

    def __init__(self, settings: Settings) -> None:
        self._inline = settings.callback_keys
        self._secret = settings.callback_secret
        self._endpoint, self._region = settings.endpoint_url, settings.region
        self._provider: Any = None
        self._read: tuple[CallbackKeys, datetime] | None = None
        self._lock = threading.Lock()

    def keys(self, now: datetime, *, unknown_kid: bool = False) -> CallbackKeys:
        if self._inline is not None:
            return _parse(self._inline.get_secret_value(), "AETHERIS_CALLBACK_KEYS")
        if self._secret is None:
            return _dev_keys()
        with self._lock:
            if self._read is not None:
                keys, read_at = self._read
                if now - read_at < (REFRESH_EVERY if unknown_kid else KEYS_MAX_AGE):
                    return keys
            keys = _parse(self._fetch(), f"secret {self._secret}")
            self._read = (keys, now)
            return keys

    def _fetch(self) -> str:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if self._provider is None:
            import boto3

            client = boto3.client("secretsmanager", endpoint_url=self._endpoint, region_name=self._region)
            self._provider = SecretsProvider(boto3_client=client)
        try:
            # The age is ours (the runtime's clock): Powertools' own cache is bypassed.
            value = self._provider.get(self._secret, force_fetch=True)
        except GetParameterError as failed:
            # Not str(failed): a provider's message may quote what it read.
            reason = f"the callback keys could not be read ({type(failed).__name__})"
            raise CallbackKeysUnavailable(reason) from None
        return value if isinstance(value, str) else bytes(value).decode()


def _parse(text: str, where: str) -> CallbackKeys:
    try:
        return CallbackKeys.model_validate_json(text)
    except ValidationError as invalid:
        # Field names only: the input holds the keys.
        fields = sorted({".".join(map(str, e["loc"])) or "(root)" for e in invalid.errors()})
        raise CallbackKeysUnavailable(
            f"{where} is not a callback keyring ({', '.join(fields)}): expected "
            '{"kid": ..., "key": <at least 32 characters>, "previous_kid"?: ..., "previous_key"?: ...}'
        ) from None


_dev_lock = threading.Lock()
_dev: CallbackKeys | None = None
_sources: dict[tuple[Any, ...], KeySource] = {}


def _dev_keys() -> CallbackKeys:
    global _dev
    with _dev_lock:
        if _dev is None:
            _dev = CallbackKeys(kid="dev", key=SecretStr(secrets.token_urlsafe(48)))
        return _dev


def key_source(settings: Settings) -> KeySource:
    """One ``KeySource`` per configuration, kept for the process (its cache is the point)."""
    inline = settings.callback_keys.get_secret_value() if settings.callback_keys else None
    identity = (inline, settings.callback_secret, settings.endpoint_url, settings.region)
    with _dev_lock:
        return _sources.setdefault(identity, KeySource(settings))


# -- the job's side --------------------------------------------------------------------------------


def new_wait(replay: Replay, name: str, timeout: timedelta) -> dict[str, Any]:
    """The recorded value of a new callback: its wait id, name and expiry — a function of the log
    (see the module docstring), so a rerun of the same tick makes the same one."""
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ValueError(f"a callback's timeout is between {MIN_TIMEOUT} and {MAX_TIMEOUT}, not {timeout}")
    anchor = replay.history.last.at.astimezone(UTC).replace(microsecond=0)
    expires_at = anchor + timedelta(seconds=math.ceil(timeout.total_seconds()))
    wait = f"{replay.position}.{len(replay.pending_values)}"
    return {"wait": wait, "name": name, "expires_at": expires_at.isoformat()}


def issue(host: Any, wait: str, name: str, expires_at: datetime) -> tuple[str, str]:
    """The token and approval link of a callback, for the job's operation host.

    A worker's invocation (``host.services``, ``host.snapshot``: the job item names its tenant)
    signs with the current key; the replay-only host of ``aetheris replay`` (no store, no keys)
    gets an unsigned stand-in, as no effect runs there. Raises ``CallbackKeysUnavailable``.
    """
    services, snapshot = getattr(host, "services", None), getattr(host, "snapshot", None)
    tenant = tenant_of(snapshot.job) if snapshot is not None else "replay"
    grant = Grant(t=tenant, j=host.job_id, w=wait, n=name, e=int(expires_at.timestamp()))
    if services is None:
        token = sign(grant, "replay", b"unsigned")
        return token, page_url("", token)
    keys = key_source(services.settings).keys(services.clock.now())
    token = sign(grant, keys.kid, keys.key.get_secret_value().encode())
    return token, page_url(services.settings.public_url, token)


class Callback:
    """A callback the job handed out: ``token`` answers it, ``url`` is the approval page for a human
    (``<public_url>/ui/callback.html#t=<token>``: the token stays in the fragment, out of every
    server log; a path when ``Settings.public_url`` is empty), and
    ``wait()`` parks the job until it is answered.

    ``wait()`` returns the payload of ``POST /callbacks/succeed``, raises ``CallbackFailed`` for
    ``POST /callbacks/fail`` and ``WaitTimeout`` once ``expires_at`` passed unanswered. Calling it
    again returns the same answer. An answer that comes before the job reaches ``wait()`` is kept.
    """

    def __init__(
        self, name: str, token: str, url: str, expires_at: datetime, park: Callable[[], Any]
    ) -> None:
        self.name, self.token, self.url, self.expires_at = name, token, url, expires_at
        self._park = park
        self._answer: tuple[Any] | None = None

    def wait(self) -> Any:
        if self._answer is None:
            self._answer = (self._park(),)
        return unwrap(self.name, self._answer[0])

    def __repr__(self) -> str:  # never the token: a repr ends up in logs
        return f"Callback(name={self.name!r}, expires_at={self.expires_at.isoformat()})"


def answer_envelope(payload: Any = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The signal payload an answer travels as: success with a payload, or failure with an error."""
    if error is not None:
        return {"outcome": "failed", "error": error}
    return {"outcome": "succeeded", "payload": payload}


def unwrap(name: str, envelope: Any) -> Any:
    if isinstance(envelope, dict) and envelope.get("outcome") == "failed":
        error = envelope.get("error") or {}
        raise CallbackFailed(name, str(error.get("code") or "failed"), str(error.get("message") or ""))
    return envelope.get("payload") if isinstance(envelope, dict) else envelope


def page_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/ui/callback.html#t={token}"
