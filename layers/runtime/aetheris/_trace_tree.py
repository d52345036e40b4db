"""The trace's causal tree and its filters (see ``aetheris.trace``).

The tree is a flat list of ``CauseNode`` in depth-first order, each naming its parent — no
recursive schema, so it stays one plain table in OpenAPI and renders as an indented list:

    job
    └ operation (step, wait, sleep, compensation, end)
      ├ attempt (committed, failed, crashed, running)   took_over → crashed one, retries → failed one
      │ └ effect claimed under that attempt's fence     (else directly under the operation)
      └ signal (under the wait it released)             link: released → the wait
    compensation                                       link: undoes → the step
"""

from __future__ import annotations

from aetheris._trace_models import Attempt, CauseLink, CauseNode, Effect, Operation, Trace
from aetheris.runtime import JobView


def causes_of(job: JobView, operations: list[Operation]) -> list[CauseNode]:
    nodes = [
        CauseNode(
            id="job",
            parent=None,
            kind="job",
            label=f"{job.job_type} {job.job_id}",
            state=job.status.value,
            at=job.created_at,
        )
    ]
    for op in operations:
        nodes.extend(_operation_nodes(op))
    return nodes


def op_id(op: Operation) -> str:
    return f"op:{op.index}"


def attempt_id(op: Operation, attempt: Attempt) -> str:
    return f"{op_id(op)}/attempt:{attempt.seq}.{attempt.fence}"


def _operation_nodes(op: Operation) -> list[CauseNode]:
    links = []
    if op.compensates is not None:
        links.append(CauseLink(rel="undoes", to=f"op:{op.compensates}"))
    nodes = [
        CauseNode(
            id=op_id(op),
            parent="job",
            kind="operation",
            label=f"{op.kind.value} {op.name}".strip(),
            state=op.state,
            at=op.started_at,
            links=links,
        )
    ]
    placed: set[int] = set()
    previous: Attempt | None = None
    for attempt in op.attempts:
        nodes.append(_attempt_node(op, attempt, previous))
        for n, effect in enumerate(op.effects):
            if n not in placed and _claimed_under(effect, attempt):
                placed.add(n)
                nodes.append(_effect_node(op, effect, attempt_id(op, attempt)))
        previous = attempt
    nodes.extend(_effect_node(op, e, op_id(op)) for n, e in enumerate(op.effects) if n not in placed)
    if op.signal is not None:
        nodes.append(
            CauseNode(
                id=f"{op_id(op)}/signal:{op.signal.signal_id}",
                parent=op_id(op),
                kind="signal",
                label=f"signal {op.signal.name} ({op.signal.signal_id})",
                state="consumed",
                at=op.signal.arrived_at or op.signal.consumed_at,
                links=[CauseLink(rel="released", to=op_id(op))],
            )
        )
    return nodes


def _attempt_node(op: Operation, attempt: Attempt, previous: Attempt | None) -> CauseNode:
    links = []
    if previous is not None and previous.outcome == "crashed" and attempt.reclaimed_from:
        links.append(CauseLink(rel="took_over", to=attempt_id(op, previous)))
    elif previous is not None and previous.outcome == "failed":
        links.append(CauseLink(rel="retries", to=attempt_id(op, previous)))
    because = f": {attempt.ended_because}" if attempt.ended_because else ""
    return CauseNode(
        id=attempt_id(op, attempt),
        parent=op_id(op),
        kind="attempt",
        label=f"attempt {attempt.attempt} on {attempt.worker_id} (fence {attempt.fence}){because}",
        state=attempt.outcome,
        at=attempt.started_at or attempt.claimed_at,
        links=links,
    )


def _claimed_under(effect: Effect, attempt: Attempt) -> bool:
    if effect.claimed_by is not None:  # UNKNOWN: the claim belonged to the superseded worker
        return attempt.outcome == "crashed" and attempt.worker_id == effect.claimed_by
    return (effect.claim_seq, effect.claim_fence) == (attempt.seq, attempt.fence)


def _effect_node(op: Operation, effect: Effect, parent: str) -> CauseNode:
    key = effect.idempotency_key or f"{effect.name}#{effect.call}"
    return CauseNode(
        id=f"{op_id(op)}/effect:{effect.name}#{effect.call}",
        parent=parent,
        kind="effect",
        label=f"{effect.kind} {effect.name} [{key}]",
        state=effect.state.value,
        at=effect.claimed_at or effect.recorded_at,
    )


def filter_trace(trace: Trace, *, operation: str | None = None, effect: str | None = None) -> Trace:
    """Only the operations matching ``operation`` (index, name or step id) and holding an effect
    matching ``effect`` (name or idempotency key), that effect alone in each. Totals stay the job's."""
    if operation is None and effect is None:
        return trace
    kept: list[Operation] = []
    for op in trace.operations:
        if operation is not None and operation not in (str(op.index), op.name, op.step_id):
            continue
        if effect is not None:
            effects = [e for e in op.effects if effect in (e.name, e.idempotency_key)]
            if not effects:
                continue
            op = op.model_copy(update={"effects": effects})
        kept.append(op)
    ids = {op_id(op) for op in kept}
    wanted = {"job"} | ids
    causes = [n for n in trace.causes if n.id in wanted or (n.id.split("/")[0] in ids)]
    if effect is not None:  # drop the other effects' nodes too
        names = {f"effect:{e.name}#{e.call}" for op in kept for e in op.effects}
        causes = [n for n in causes if n.kind != "effect" or n.id.rsplit("/", 1)[-1] in names]
    filters = {k: v for k, v in (("operation", operation), ("effect", effect)) if v is not None}
    return trace.model_copy(update={"operations": kept, "causes": causes, "filtered_by": filters})
