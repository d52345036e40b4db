"""AWS list prices (us-east-1, on-demand, USD, no free tier) that the benchmarks turn counts into.

One place, one date: every cost figure in ``bench/results`` is computed from these, so a price
change is one edit here and a re-run. Prices are per *unit* (not per million) so that arithmetic
elsewhere is plain multiplication; ``per_million`` turns them back for printing.

Sources (read through the workplace's docs search on PRICES_AS_OF; first tier of each tiered price):
- DynamoDB on-demand: https://aws.amazon.com/dynamodb/pricing/on-demand/ — a write request unit
  writes up to 1 KB (a transactional write costs 2 per KB), a read request unit reads up to 4 KB
  strongly consistent (eventually consistent: half; transactional: 2). $0.625 per million WRU and
  $0.125 per million RRU since the on-demand price cut of 2024-11-01.
- SQS: https://aws.amazon.com/sqs/pricing/ — standard queue $0.40 per million requests (first
  100 billion a month); every 64 KB chunk of a payload is one request; a batch call (up to 10
  messages) is one request.
- Lambda: https://aws.amazon.com/lambda/pricing/ — $0.20 per million requests; duration
  $0.0000166667 per GB-s on x86_64 and $0.0000133334 on arm64 (first 6 billion GB-s a month),
  billed per 1 ms.
- Lambda durable functions: https://aws.amazon.com/lambda/pricing/ (durable functions section, as
  transcribed on 2026-09-20 in api-evangelist/aws-lambda ``plans/aws-lambda-plans-pricing.yml``:
  "Durable Functions operations $8.00/M"); data written $0.25 per GB and data retained $0.15 per
  GB-month as published at launch (2025-12). Lambda requests and duration are billed on top.
- Step Functions Standard: https://aws.amazon.com/step-functions/pricing/ — $0.025 per 1,000 state
  transitions ($25 per million); the Lambda tasks it calls are billed as Lambda.
- S3 Standard: https://aws.amazon.com/s3/pricing/ — PUT/COPY/POST/LIST $0.005 per 1,000,
  GET $0.0004 per 1,000.
- API Gateway HTTP API: https://aws.amazon.com/api-gateway/pricing/ — $1.00 per million requests
  (first 300 million a month).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PRICES_AS_OF = "2026-12-01"
REGION = "us-east-1"
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    dynamodb_wru: float = 0.625 / MILLION
    dynamodb_rru: float = 0.125 / MILLION
    sqs_request: float = 0.40 / MILLION
    lambda_request: float = 0.20 / MILLION
    lambda_gb_s_arm64: float = 0.0000133334
    lambda_gb_s_x86_64: float = 0.0000166667
    s3_put: float = 0.005 / 1000
    s3_get: float = 0.0004 / 1000
    http_api_request: float = 1.00 / MILLION
    ldf_operation: float = 8.00 / MILLION
    ldf_written_gb: float = 0.25
    ldf_retained_gb_month: float = 0.15
    sfn_standard_transition: float = 0.025 / 1000

    def lambda_gb_s(self, architecture: str) -> float:
        """Duration price per GB-second for ``arm64`` or ``x86_64``."""
        if architecture == "arm64":
            return self.lambda_gb_s_arm64
        if architecture == "x86_64":
            return self.lambda_gb_s_x86_64
        raise ValueError(f"unknown Lambda architecture {architecture!r}")

    def as_json(self) -> dict[str, Any]:
        """Every price per million units (per GB for data), with the date and region."""
        per_million = {
            name: round(value * MILLION, 6)
            for name, value in asdict(self).items()
            if not name.startswith(("lambda_gb_s", "ldf_written", "ldf_retained"))
        }
        return {
            "as_of": PRICES_AS_OF,
            "region": REGION,
            "per_million": per_million,
            "lambda_gb_s": {"arm64": self.lambda_gb_s_arm64, "x86_64": self.lambda_gb_s_x86_64},
            "ldf_data": {
                "written_per_gb": self.ldf_written_gb,
                "retained_per_gb_month": self.ldf_retained_gb_month,
            },
        }


PRICES = Prices()


def per_million(usd_per_unit: float) -> float:
    """USD per unit → USD per million units, rounded for tables."""
    return round(usd_per_unit * MILLION, 3)


if __name__ == "__main__":
    import json

    print(json.dumps(PRICES.as_json(), indent=2))
