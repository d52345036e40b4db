"""What every process of a chaos run shares: where the stack is, the runtime's timings, the fault rates.

The driver writes one ``RunConfig`` as JSON into the run directory; each worker process reads it
(``--config``) and adds only its own seed, name and crash plan from its command line. Timings are
short so that a killed worker's job is taken over within seconds: the lease, the queues' visibility
timeout (lowered from the template's 360 s after bootstrap) and the sweeper's stall window.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from aetheris import Settings

EFFECTS_FILE = "effects.jsonl"  # the external ledger: one line per real call of a tool
FAULTS_FILE = "faults.jsonl"  # one line per injected fault, from every process
JOURNAL_FILE = "journal.jsonl"  # every DynamoDB write the server applied or refused, in order


@dataclass(frozen=True)
class FaultRates:
    """How often the botocore hook injects each kind of fault (per client call, seeded)."""

    # A DynamoDB call starts a burst of 1..max_attempts throttling / 5xx answers before the request
    # is sent; a burst as long as the client's attempts surfaces to the runtime as a ClientError.
    dynamodb: float = 0.04
    # The same for SQS SendMessage (the enqueue of the next tick, a signal, a wake-up) ...
    sqs_send: float = 0.06
    # ... and for ReceiveMessage / DeleteMessageBatch.
    sqs_other: float = 0.01
    # SendMessage reached SQS but its answer was lost: the client sends again (a duplicate message).
    sqs_lost_response: float = 0.02
    # A DynamoDB write was applied but its answer was lost (a 500 after the fact) and the client
    # retried it: the retry finds its own first try (a claim, a commit, a ledger record).
    dynamodb_lost_response: float = 0.01
    # Client attempts per call, the first one included (what botocore's retries would do).
    max_attempts: int = 3
    # Share of bursts that run through every attempt and surface (to the runtime, on any call).
    surfacing: float = 0.2


@dataclass(frozen=True)
class RunConfig:
    seed: int
    run_dir: str
    endpoint: str
    jobs_table: str
    inbox_table: str
    step_queue_url: str
    signal_queue_url: str
    lease_s: float = 3.0
    lease_margin_s: float = 1.0
    stall_after_s: float = 5.0
    visibility_s: int = 4
    # The runtime's default: workers that vanished holding one slot before the job is failed.
    max_slot_claims: int = 5
    batch_size: int = 4
    rates: FaultRates = field(default_factory=FaultRates)

    @property
    def run_dir_path(self) -> Path:
        return Path(self.run_dir)

    @property
    def effects_path(self) -> Path:
        return Path(self.run_dir) / EFFECTS_FILE

    @property
    def faults_path(self) -> Path:
        return Path(self.run_dir) / FAULTS_FILE

    @property
    def journal_path(self) -> Path:
        return Path(self.run_dir) / JOURNAL_FILE

    def settings(self) -> Settings:
        return Settings(
            jobs_table=self.jobs_table,
            inbox_table=self.inbox_table,
            step_queue_url=self.step_queue_url,
            signal_queue_url=self.signal_queue_url,
            endpoint_url=self.endpoint,
            region="us-east-1",
            lease=timedelta(seconds=self.lease_s),
            lease_margin=timedelta(seconds=self.lease_margin_s),
            stall_after=timedelta(seconds=self.stall_after_s),
            max_slot_claims=self.max_slot_claims,
            # One keyring for the driver and every worker process (each would make its own dev key).
            callback_keys=SecretStr(
                json.dumps({"kid": "chaos", "key": f"chaos-callback-key-{self.seed:0>24}"})
            ),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["rates"] = FaultRates(**data.get("rates", {}))
        return cls(**data)
