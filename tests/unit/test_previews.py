"""``aetheris._previews``: what operators see of a value — secrets redacted by key, long values cut."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from aetheris._previews import (
    DEFAULT_REDACT_KEYS,
    REDACTED,
    Values,
    is_secret,
    normalise_keys,
    preview_args,
    redact,
)

KEYS = normalise_keys(DEFAULT_REDACT_KEYS)


def test_redact_secret_keys_match_by_name_ending_whatever_the_spelling() -> None:
    for key in ("password", "db_password", "X-Api-Key", "access_token", "Authorization", "aws.secret"):
        assert is_secret(key, KEYS), key
    for key in ("max_tokens", "token_count", "passwords_checked", "author", "key"):
        assert not is_secret(key, KEYS), key


def test_redact_replaces_secrets_at_any_depth_and_keeps_the_rest() -> None:
    value = {"user": "ana", "auth": {"headers": [{"Authorization": "Bearer x"}], "api_key": 7}, "n": [1, 2]}

    assert redact(value, KEYS) == {
        "user": "ana",
        "auth": {"headers": [{"Authorization": REDACTED}], "api_key": REDACTED},
        "n": [1, 2],
    }


def test_redact_deep_nesting_and_non_finite_numbers_stay_printable() -> None:
    deep: object = "leaf"
    for _ in range(200):
        deep = {"down": deep}

    shown = json.dumps(redact({"deep": deep, "nan": math.nan, "inf": -math.inf}, KEYS))

    assert "[too deep]" in shown and '"nan": "nan"' in shown and '"inf": "-inf"' in shown


class Card(BaseModel):
    holder: str
    card_secret: str


def test_preview_args_redacts_before_writing_and_dumps_models_and_odd_values() -> None:
    circular: list[object] = []
    circular.append(circular)

    text = preview_args(
        (Card(holder="Zoë", card_secret="4111"), 10**40), {"password": "p", "tags": {"b", "a"}}
    )
    odd = preview_args((circular,), {})

    assert json.loads(text) == {
        "args": [{"holder": "Zoë", "card_secret": REDACTED}, 10**40],
        "kwargs": {"password": REDACTED, "tags": ["a", "b"]},
    }
    assert json.loads(odd) == {"unprintable": "ValueError"}


def test_preview_args_over_the_limit_is_a_bounded_preview_with_the_true_size() -> None:
    text = preview_args(("é" * 5000,), {}, limit=512)

    preview = json.loads(text)
    assert preview["truncated"] is True and preview["bytes"] > 10_000
    assert len(text.encode()) < 1024


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=30,
    )
)
def test_preview_args_is_always_valid_json_for_any_json_like_value(value: object) -> None:
    assert isinstance(json.loads(preview_args((value,), {"v": value}, limit=256)), dict)


def test_values_load_redacts_cuts_and_tolerates_text_that_is_not_json() -> None:
    values = Values(limit=64)

    assert values.load('{"token": "t", "ok": 1}') == {"token": REDACTED, "ok": 1}
    assert values.load(json.dumps({"blob": "x" * 500}))["truncated"] is True
    assert values.load("not json") == "not json"
    assert Values(limit=None, keys=("pin",)).load('{"pin": 1234, "token": "kept"}') == {
        "pin": REDACTED,
        "token": "kept",
    }
