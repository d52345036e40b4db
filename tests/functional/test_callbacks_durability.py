"""Scoped callback tokens across crashes, replays, early answers and key rotation.

The token a job hands out is a function of its log: a tick that dies after mailing it and is run
again mails the very same token, and an answer is never lost — not one sent while the job is still
on its way to the wait, not one sent before the tick that made the token even committed.
Keys rotate through the Secrets Manager secret (moto): a token signed by the previous key still
answers, one signed by a key that was dropped is refused, and nothing is written for it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from aetheris import CRASH_POINTS
from aetheris.testing import LocalRuntime
from tests.functional.callback_jobs import KEY, KID, Mailbox, answer, build_app, running, written

# Crash points a tick that runs the mail step passes (the inbox one is the signal ingest's).
TICK_POINTS = [p for p in CRASH_POINTS if p not in ("before_retention", "after_inbox_write")]


def test_replay_returns_the_token_the_job_handed_out(mailbox: Mailbox | None = None) -> None:
    mailbox = Mailbox()
    with running(build_app(mailbox)) as local:
        job_id = local.start("approve", 0)
        local.run_until_idle()
        assert answer(mailbox.token, {"say": "yes"})[0] == 202
        local.run_until_idle()

        # The last step got cb.token on the job's fourth tick, replayed from the log.
        assert local.get(job_id).result == {"answer": {"say": "yes"}, "replayed_token": mailbox.token}
        assert local.replay(job_id).consistent  # the dry replay (no keys, no store) agrees too
        assert mailbox.calls["mail"] == 1


@pytest.mark.parametrize("point", TICK_POINTS)
def test_a_crash_anywhere_in_the_tick_that_mails_the_token_leaves_one_token_and_the_answer_lands(
    point: str,
) -> None:
    mailbox = Mailbox()
    with running(build_app(mailbox)) as local:
        # The first tick makes the callback and runs the mail step: it reaches the point first.
        local.crash_at(point)  # type: ignore[arg-type]
        job_id = local.start("approve", 0)
        local.run_until_idle()
        status = local.get(job_id).status
        if status != "WAITING":  # a crash after the wait parked: the next tick gets there
            local.advance(timedelta(minutes=3))
            local.run_until_idle()

        assert local.get(job_id).status == "WAITING"
        assert len(set(mailbox.tokens)) == 1, point  # every mail attempt carried the same token
        assert answer(mailbox.token, {"after": point})[0] == 202
        local.run_until_idle()
        assert local.get(job_id).result == {"answer": {"after": point}, "replayed_token": mailbox.token}


def test_crash_during_the_mail_step_then_rerun_keeps_the_token_mailed_first() -> None:
    mailbox = Mailbox()
    with running(build_app(mailbox)) as local:
        local.crash_at("after_effect")  # the mail went out; the step's outcome was never recorded
        job_id = local.start("approve", 0)
        local.run_until_idle()
        if local.get(job_id).status != "WAITING":
            local.advance(timedelta(minutes=3))
            local.run_until_idle()

        assert local.crashes and local.crashes[0].point == "after_effect"
        assert mailbox.calls["mail"] == 2 and mailbox.tokens[0] == mailbox.tokens[1]
        # The human clicks the link of the first mail.
        assert answer(mailbox.tokens[0], {"say": "approved"})[0] == 202
        local.run_until_idle()
        assert local.get(job_id).result["answer"] == {"say": "approved"}


def test_an_answer_sent_while_the_job_is_still_on_its_way_to_the_wait_is_kept_for_it() -> None:
    mailbox = Mailbox()
    with running(build_app(mailbox)) as local:
        job_id = local.start("approve", 600)  # sleeps 10 minutes between the mail and the wait
        local.run_until_idle()
        assert local.get(job_id).status == "SLEEPING"

        assert answer(mailbox.token, {"say": "early"})[0] == 202
        local.run_until_idle()
        local.advance(timedelta(minutes=11))
        local.run_until_idle()

        assert local.get(job_id).result["answer"] == {"say": "early"}


def test_an_answer_sent_before_the_tick_that_made_the_token_committed_is_kept() -> None:
    mailbox = Mailbox()
    mailbox.answer_inside = {"say": "instant"}  # the webhook answers while the mail step is still running
    with running(build_app(mailbox)) as local:
        job_id = local.start("approve", 0)
        local.run_until_idle()
        assert local.get(job_id).result["answer"] == {"say": "instant"}
        assert mailbox.calls["mail"] == 1


def _keys(kid: str, key: str, previous: tuple[str, str] | None = None) -> str:
    value = {"kid": kid, "key": key}
    if previous:
        value |= {"previous_kid": previous[0], "previous_key": previous[1]}
    return json.dumps(value)


def test_key_rotation_previous_key_still_verifies_a_dropped_key_is_callback_invalid() -> None:
    secret = "aetheris-test-callback-keys"
    k2 = ("k2", "second-key-0123456789-0123456789-0123")
    k3 = ("k3", "third-key-0123456789-0123456789-01234")
    first, second = Mailbox(), Mailbox()
    app = build_app(first)
    with running(app, callback_keys=None, callback_secret=secret) as local:
        sm = _secrets(local)
        sm.create_secret(Name=secret, SecretString=_keys(KID, KEY))
        old_job = local.start("approve", 0)
        local.run_until_idle()
        assert first.token.split(".")[1] == KID

        # Rotate: k2 signs, k1 still verifies.
        sm.put_secret_value(SecretId=secret, SecretString=_keys(*k2, previous=(KID, KEY)))
        local.advance(timedelta(minutes=6))  # past the cached keyring's age
        second_app_job = local.start("approve", 0)
        local.run_until_idle()
        new_token = first.tokens[-1]
        assert new_token.split(".")[1] == "k2"
        assert answer(first.tokens[0], {"say": "signed by the previous key"})[0] == 202
        local.run_until_idle()
        assert local.get(old_job).result["answer"] == {"say": "signed by the previous key"}

        # Rotate again: k1 is dropped. A token it signed no longer answers anything.
        sm.put_secret_value(SecretId=secret, SecretString=_keys(*k3, previous=k2))
        local.advance(timedelta(minutes=6))
        third_job = local.start("approve", 0)
        local.run_until_idle()
        k1_token_for_third = _resign(first.tokens[-1], KID, KEY)
        before = written(local, third_job)
        status, body = answer(k1_token_for_third, {"say": "signed by a dropped key"})
        assert (status, body["error"]["code"]) == (403, "callback_invalid")
        assert written(local, third_job) == before
        assert answer(new_token, {"say": "signed by the previous key"})[0] == 202  # k2 is previous now
        local.run_until_idle()
        assert local.get(second_app_job).result["answer"] == {"say": "signed by the previous key"}
    del second


def _resign(token: str, kid: str, key: str) -> str:
    from tests.functional.callback_jobs import forge
    from tests.functional.test_callbacks import grant_of

    return forge(grant_of(token), kid=kid, key=key)


def _secrets(local: LocalRuntime):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("secretsmanager", region_name="us-east-1")


def test_a_plain_signal_cannot_take_a_callback_answers_reserved_id() -> None:
    from aetheris._store.inbox import SignalIdConflict

    mailbox = Mailbox()
    with running(build_app(mailbox)) as local:
        job_id = local.start("approve", 0)
        local.run_until_idle()
        wait_signal = "callback/0.0"  # the job's first wait: position 0, first callback
        with pytest.raises(SignalIdConflict, match="reserved"):
            local.signal(job_id, "approval", {"say": "no"}, signal_id=wait_signal)
        assert answer(mailbox.token, {"say": "yes"})[0] == 202, "the real answer still lands"
        local.run_until_idle()
        assert local.get(job_id).result["answer"] == {"say": "yes"}
