"""Answering a callback: check a token against the job it names, then send the answer as its signal.

Every refusal is a ``CallbackRefused`` with its own code (the API answers 403) and is decided before
anything is written — no inbox item, no queue message:

* ``callback_malformed`` — not a token; ``callback_invalid`` — not signed by a key we hold (altered,
  or signed with a key that was rotated out);
* ``callback_wrong_job`` — the job it names does not exist (any more) in the tenant it names;
* ``callback_wrong_wait`` — the job's log recorded something else at the token's wait;
* ``callback_used`` — the wait was already answered with another answer;
* ``callback_closed`` — the wait ended unanswered (timed out) or the job finished;
* ``callback_expired`` — the token's expiry passed.

The same answer sent again gets the first answer's outcome (the signal id is the wait's, so the
inbox holds one answer per wait), checked first: a retry after the job consumed it, or after the
job finished, is still told 202. An answer that comes before the job reaches the wait — even before
the tick that made the token committed it — is accepted and kept for the wait (the token's
signature proves this job made that grant; its wait and expiry are a function of the log).

Two different answers racing past the checks: the inbox write decides, the loser is told
``callback_used``; its message is already on the signal queue, and ingest drops it (``conflict``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aetheris._engine.history import History
from aetheris._store.inbox import InboxSignal, SignalIdConflict
from aetheris._tenancy import tenant_of
from aetheris._values import storable_json
from aetheris.callbacks import CallbackRefused, Grant, TokenRefused, key_source, verify
from aetheris.errors import JobFinished
from aetheris.events import Event, EventType, JobStatus

if TYPE_CHECKING:
    from aetheris.runtime import Runtime


def check_token(runtime: Runtime, token: str) -> Grant:
    """The grant of ``token``: one of our keys signed it (read again once if its kid is unknown)."""
    source, now = key_source(runtime.settings), runtime.services.clock.now()

    def key_of(kid: str) -> bytes | None:
        found = source.keys(now).verifying(kid)
        if found is None:  # rotated since we last read the keyring?
            found = source.keys(now, unknown_kid=True).verifying(kid)
        return found

    try:
        return verify(token, key_of)
    except TokenRefused as refused:
        raise CallbackRefused(refused.code, str(refused)) from None


def answer(runtime: Runtime, token: str, envelope: dict[str, Any]) -> tuple[Grant, str]:
    """Send ``envelope`` (``callbacks.answer_envelope``) as the answer to the token's wait: the
    grant and the signal id, once the answer is on the signal queue and in the inbox."""
    grant = check_token(runtime, token)
    services = runtime.services
    payloads = services.payloads
    job_id, signal = grant.j, grant.signal
    item = services.jobs.get(job_id)
    if item is None or tenant_of(item) != grant.t:
        raise CallbackRefused("callback_wrong_job", "the job this token names does not exist (any more)")
    payload_json = storable_json(envelope, "payload", limit=payloads.limit)
    stored = services.inbox.table.get(job_id, signal)
    if stored is not None:
        # By value: the first answer may have been offloaded (its item holds a reference).
        first_json = payloads.text(InboxSignal.from_item(stored).payload_json)
        if first_json is not None and json.loads(first_json) == json.loads(payload_json):
            return grant, signal
        raise CallbackRefused("callback_used", "this callback was already answered, with another answer")
    if JobStatus(item["status"]).is_terminal:
        raise CallbackRefused("callback_closed", f"the job has ended ({item['status']}): it waits no more")
    snapshot = services.jobs.load(job_id)
    history = History([Event.from_item(payloads.resolve(e)) for e in (snapshot.events if snapshot else [])])
    _check_wait(history, grant)
    if services.clock.now() >= grant.expires_at:
        raise CallbackRefused("callback_expired", f"the token expired at {grant.expires_at.isoformat()}")
    try:
        runtime.send_signal(job_id, signal, envelope, signal, tenant=grant.t)
    except SignalIdConflict:
        message = "this callback was just answered, with another answer"
        raise CallbackRefused("callback_used", message) from None
    except JobFinished as finished:
        raise CallbackRefused("callback_closed", f"the job has ended ({finished.status})") from None
    return grant, signal


def _check_wait(history: History, grant: Grant) -> None:
    """Refuse a grant the log contradicts (``wrong_wait``) or whose wait has ended (``closed``)."""
    if grant.position < history.base:  # the run it belonged to ended with ctx.continue_as_new
        raise CallbackRefused("callback_closed", "the job continued as new: this wait is gone")
    record = history.ops.get(grant.position)
    if record is not None:  # the callback's value was recorded with this operation: is it ours?
        made = [v.get("value") for v in record.recorded_values if isinstance(v, dict)]
        ours = any(
            isinstance(value, dict)
            and value.get("wait") == grant.w
            and value.get("name") == grant.n
            and _epoch(value.get("expires_at")) == grant.e
            for value in made
        )
        if not ours:
            raise CallbackRefused("callback_wrong_wait", "the job has no such callback wait")
    for event in history.events:
        if event.detail.get("signal") != grant.signal:
            continue
        if event.type is EventType.WAIT_TIMED_OUT:
            raise CallbackRefused("callback_closed", "the wait timed out before this answer")
        if event.type is EventType.SIGNAL_CONSUMED:  # its inbox item is gone (retention)
            raise CallbackRefused("callback_used", "this callback was already answered")


def _epoch(text: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(text)).timestamp())
    except ValueError:
        return None
