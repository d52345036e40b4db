"""Runtime configuration: one frozen, validated object built once from the environment.

Nothing reads the environment at import time; ``Settings.from_env()`` is called when a handler
builds its runtime (lazily, on the first event), and tests build ``Settings`` directly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from aetheris._previews import DEFAULT_REDACT_KEYS


class Settings(BaseSettings):
    """Names of the resources in ``template.yaml`` and the runtime's tunables (units in the types)."""

    # populate_by_name: ``Settings(lease=...)`` in code, ``AETHERIS_LEASE_SECONDS`` in the environment.
    model_config = SettingsConfigDict(
        env_prefix="AETHERIS_", frozen=True, extra="ignore", populate_by_name=True
    )

    jobs_table: str = "aetheris-local-JobsTable"
    inbox_table: str = "aetheris-local-InboxTable"
    step_queue_url: str = ""
    signal_queue_url: str = ""
    # Dead-letter queues, read (never consumed) by the operator views: depths and stuck jobs.
    step_dlq_url: str = ""
    signal_dlq_url: str = ""
    app: str = Field(default="", description="import path 'module:attribute' of the App to host")
    endpoint_url: str | None = Field(default=None, description="DynamoDB/SQS endpoint (moto, LocalStack)")
    region: str | None = None
    # Mapping keys whose values traces and tool-input previews show as "[redacted]" (a key matches
    # when its name ends with one of these, see aetheris/_previews.py). The environment's
    # AETHERIS_REDACT_KEYS is a comma-separated list and replaces the default.
    redact_keys: Annotated[tuple[str, ...], NoDecode] = DEFAULT_REDACT_KEYS
    # The JWT claim (or Lambda authorizer context key) naming the caller's tenant (see handlers/api_tenancy).
    tenant_claim: str = Field(default="tenant", min_length=1)
    # Scoped callback tokens (aetheris/callbacks.py): the keyring's JSON itself (local use), or the
    # Secrets Manager secret holding it (the template's); with neither, a key made per process.
    callback_keys: SecretStr | None = None
    callback_secret: str | None = None
    # The API's public base URL, for the approval links of callbacks (``Callback.url``).
    public_url: str = ""

    # The committed events a worker keeps between ticks, in approximate bytes of memory (least
    # recently used job first out; see _store/event_cache.py). 0 keeps none: every tick reads cold.
    event_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Every run of this many committed events gets a compact copy for cold reads (_store/segments.py).
    log_segment_events: int = Field(default=100, ge=2, le=1000)
    lease: timedelta = Field(default=timedelta(seconds=60), validation_alias="AETHERIS_LEASE_SECONDS")
    # A tool call is only started while at least this much lease is left; less, and the lease is
    # renewed first (a zombie learns it lost the job before it touches the outside world).
    lease_margin: timedelta = timedelta(seconds=10)
    # A step runs at most this long (and never past what the Lambda invocation has left).
    step_timeout: timedelta = timedelta(minutes=5)
    # After this many workers claimed one slot and vanished (neither committed nor gave it back),
    # the job fails (crash loop). Claims given back (an idle or early tick, an error) do not count.
    max_slot_claims: int = Field(default=5, ge=2)
    # Without a payload bucket, values over this are refused with PayloadTooLarge: well under
    # DynamoDB's 400 KB item limit so that the rest of the item always fits.
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    # With a bucket, values over this go to S3 and the item keeps a reference (see _store/payloads.py).
    payload_bucket: str | None = None
    offload_threshold_bytes: int = Field(default=32 * 1024, ge=1024)
    # With a bucket, values over this are refused with PayloadTooLarge (terminal, never retried).
    max_offloaded_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # How long a finished job (job item, log, ledger, inbox) is kept before DynamoDB's TTL removes
    # it. The environment gives whole days (the template's RetentionDays), code a timedelta.
    retention: timedelta = Field(
        default=timedelta(days=30), gt=timedelta(0), validation_alias="AETHERIS_RETENTION_DAYS"
    )
    # Every item is written with a provisional TTL of retention + this horizon past its write (see
    # _store/retention.py): a finished job's items go between retention and retention + horizon
    # after its end; a job that lives longer has its items extended once per horizon / 2.
    retention_horizon: timedelta = Field(
        default=timedelta(days=30),
        gt=timedelta(0),
        validation_alias="AETHERIS_RETENTION_HORIZON_DAYS",
    )
    # The sweeper ticks a runnable job whose next tick was due this long ago and never came.
    stall_after: timedelta = Field(default=timedelta(minutes=2), validation_alias="AETHERIS_STALL_SECONDS")
    # Warm jobs whose job function a worker keeps alive between ticks (one parked thread each,
    # least recently used dropped first; 0: every tick replays from the top). See _engine/sticky.py.
    sticky_jobs: int = Field(default=64, ge=0, le=10_000)
    # Partitions of the attention index (_store/watch.py): grow it with the number of live jobs
    # (about 1 per 30,000 jobs stepping continuously), never shrink it while jobs are on the index.
    sweep_shards: int = Field(default=32, ge=1, le=1000)

    @field_validator("retention", "retention_horizon", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        # A bare number is days (pydantic would read it as seconds): AETHERIS_RETENTION_DAYS=30.
        if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
            return timedelta(days=float(value))
        return value

    @field_validator("redact_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @classmethod
    def from_env(cls) -> Settings:
        return cls()
