"""What the same work costs on Lambda durable functions (LDF) and Step Functions Standard (SFN),
computed from their published pricing (``prices.py``) — not measured: neither runs here.

The work per operation kind, and how each peer would do it:

- effect-free step / step with one tool call — LDF: one ``context.step`` (one durable operation,
  its checkpoint written and retained), all steps of a job in one invocation, so each step bills
  only the checkpoint call's wait. SFN: one Task state (one transition) invoking a Lambda function
  (one request and its duration). A tool call inside a step is the step's own work on both.
- wait + signal — LDF: ``create_callback`` (one operation), the job suspends, the callback API
  resumes it (one invocation that replays the log). SFN: a ``.waitForTaskToken`` Task (one
  transition) that hands the token to an SQS queue (one request), ``SendTaskSuccess`` resumes it.
  Both need the same front door as ours for an outside caller (HTTP API request and a Lambda that
  calls the resume API): it is added to each, at our API function's measured cost.
- timer — LDF: ``context.wait`` (one operation) and the resume invocation. SFN: a Wait state (one
  transition).

Assumptions (named constants): the checkpoint call waits as long as a DynamoDB write; a Task's
Lambda runs ``TASK_MS``; a checkpoint stores ``CHECKPOINT_BYTES``; LDF's default retention (14 days).
"""

from __future__ import annotations

from dataclasses import dataclass

from meter import LambdaModel
from prices import PRICES, Prices

CHECKPOINT_BYTES = 1024  # our step event item is under 1 KB; LDF bills the serialized result and its metadata
CHECKPOINT_WAIT_S = 0.005  # one checkpoint API call, billed as the function waits for it
RESUME_S = 0.020  # a resumed invocation: fetch the state, replay a short log
TASK_MS = 3.0  # a trivial Task Lambda, billed per ms
RETENTION_DAYS = 14
GB = 1024**3


@dataclass(frozen=True)
class PeerCost:
    ldf: float
    sfn: float


def _ldf_operation(prices: Prices) -> float:
    data = CHECKPOINT_BYTES / GB
    return (
        prices.ldf_operation
        + data * prices.ldf_written_gb
        + data * prices.ldf_retained_gb_month * (RETENTION_DAYS / 30)
    )


def peer_costs(kind: str, model: LambdaModel, front_door: float, prices: Prices = PRICES) -> PeerCost:
    """USD per operation of ``kind`` (``step``, ``tool``, ``wait``, ``timer``) on each peer;
    ``front_door`` is what delivering one outside signal costs (HTTP API + a Lambda)."""
    op = _ldf_operation(prices)
    checkpoint = model.duration_cost(CHECKPOINT_WAIT_S, prices)
    resume = prices.lambda_request + model.duration_cost(RESUME_S, prices)
    task = prices.lambda_request + model.duration_cost(TASK_MS / 1000, prices)
    transition = prices.sfn_standard_transition
    # A branch: on LDF a map item is a child context's step; on SFN a Map iteration's task state.
    if kind in ("step", "tool", "branch"):
        return PeerCost(ldf=op + checkpoint, sfn=transition + task)
    if kind == "wait":
        return PeerCost(
            ldf=op + checkpoint + resume + front_door,
            sfn=transition + prices.sqs_request + front_door,
        )
    if kind == "timer":
        return PeerCost(ldf=op + checkpoint + resume, sfn=transition)
    raise ValueError(f"unknown operation kind {kind!r}")


def peer_job_overhead(model: LambdaModel, prices: Prices = PRICES) -> PeerCost:
    """Once per job: LDF's first invocation (plus its execution start); SFN's start and end states."""
    first = prices.lambda_request + model.duration_cost(RESUME_S, prices)
    return PeerCost(ldf=first + _ldf_operation(prices), sfn=2 * prices.sfn_standard_transition)
