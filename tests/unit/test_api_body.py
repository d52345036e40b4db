"""The API's JSON body reader: whatever the text, it parses or refuses with an error the API answers
as a 4xx (``malformed_json``, ``invalid_value``, ``payload_too_large``) — never anything that
becomes a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aetheris import PayloadTooLarge
from aetheris._values import UnstorableValue, check_storable
from aetheris.handlers.api import _load_body

ANSWERED = (json.JSONDecodeError, UnstorableValue, PayloadTooLarge)
tokens = st.sampled_from(
    [
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        '"a"',
        '"\\ud800"',
        '"\\udc00x"',
        "1e400",
        "-1e999",
        "NaN",
        "Infinity",
        "7" * 5000,
        "0",
        "-0.0",
        "true",
        "null",
        '"é"',
        '"\\u0000"',
        " ",
    ]
)


@given(st.lists(tokens, max_size=60).map("".join))
def test_load_body_any_text_parses_storable_or_is_refused_as_a_4xx(text: str) -> None:
    try:
        body = _load_body(text)
    except ANSWERED:
        return
    check_storable(body, "body")  # what got through is what the runtime can store


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("[" * 100_000 + "]" * 100_000, UnstorableValue),
        ('{"n": ' + "1" * 5000 + "}", UnstorableValue),
        ('{"x": 1e400}', UnstorableValue),
        ('{"x": NaN}', json.JSONDecodeError),
        ('"\\ud800"', UnstorableValue),
    ],
)
def test_load_body_unreadable_or_unstorable_body_raises_an_answered_error(text: str, refused: type) -> None:
    with pytest.raises(refused):
        _load_body(text)
