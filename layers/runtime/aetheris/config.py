"""Runtime configuration: one frozen, validated object built once from the environment.

Nothing reads the environment at import time; ``Settings.from_env()`` is called when a handler
builds its runtime (lazily, on the first event), and tests build ``Settings`` directly.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    app: str = Field(default="", description="import path 'module:attribute' of the App to host")
    endpoint_url: str | None = Field(default=None, description="DynamoDB/SQS endpoint (moto, LocalStack)")
    region: str | None = None

    lease: timedelta = Field(default=timedelta(seconds=60), validation_alias="AETHERIS_LEASE_SECONDS")
    # A tool call is only started while at least this much lease is left; less, and the lease is
    # renewed first (a zombie learns it lost the job before it touches the outside world).
    lease_margin: timedelta = timedelta(seconds=10)
    # Payloads over this are refused with PayloadTooLarge (S3 offload arrives later); well under
    # DynamoDB's 400 KB item limit so that the rest of the item always fits.
    # A step runs at most this long (and never past what the Lambda invocation has left).
    step_timeout: timedelta = timedelta(minutes=5)
    # After this many workers claimed one slot and vanished (neither committed nor gave it back),
    # the job fails (crash loop). Claims given back (an idle or early tick, an error) do not count.
    max_slot_claims: int = Field(default=5, ge=2)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    # The sweeper ticks a runnable job whose next tick was due this long ago and never came.
    stall_after: timedelta = Field(default=timedelta(minutes=2), validation_alias="AETHERIS_STALL_SECONDS")

    @classmethod
    def from_env(cls) -> Settings:
        return cls()
