"""``aetheris._values``: what the runtime can store and read back, and how it refuses the rest.

Properties over generated JSON values: every storable value comes back unchanged through both
readers the runtime uses (pydantic's jiter and Python's ``json``), its size is its UTF-8 bytes,
and an unstorable leaf planted anywhere is refused with the path to it.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from aetheris import PayloadTooLarge
from aetheris._values import MAX_DEPTH, MAX_INT_DIGITS, UnstorableValue, check_storable, storable_json
from aetheris.errors import ErrorInfo, NonRetryableError, rebuild_error

ANY: TypeAdapter[Any] = TypeAdapter(Any)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**MAX_INT_DIGITS) + 1, max_value=10**MAX_INT_DIGITS - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # no surrogates: hypothesis leaves category Cs out by default
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)
# Short keys, some not identifiers: paths stay readable and are never cut.
keys = st.text(alphabet="ab_ 9é\"'", max_size=6)
tree = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
containers = st.lists(tree, min_size=1, max_size=3) | st.dictionaries(keys, tree, min_size=1, max_size=3)
unstorable_leaves = st.sampled_from(
    [
        (math.inf, "not a finite number"),
        (-math.inf, "not a finite number"),
        (math.nan, "not a finite number"),
        (10**MAX_INT_DIGITS, f"integer of {MAX_INT_DIGITS + 1} digits"),
        (-(10**5000), "integer of 5001 digits"),
        ("ok\ud800", "lone surrogate"),
        ("\udfff", "lone surrogate"),
    ]
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def step(key: object) -> str:
    if isinstance(key, str) and key.isidentifier() and key.isascii():
        return f".{key}"
    return f"[{key!r}]"


@given(json_values)
def test_storable_json_any_json_value_reads_back_unchanged_by_both_readers(value: Any) -> None:
    text = storable_json(value, "input")

    assert ANY.validate_json(text) == value
    assert json.loads(text) == value


@given(json_values)
def test_storable_json_text_is_the_one_dump_the_runtime_stores(value: Any) -> None:
    # What a signal's ingest writes is the dump of the value read back from the message: the same bytes.
    text = storable_json(value, "payload")
    assert storable_json(ANY.validate_json(text), "payload") == text


@given(st.text(min_size=1, max_size=200))
def test_storable_json_size_is_measured_on_the_utf8_bytes_written(text: str) -> None:
    stored = storable_json(text, "payload")
    size = len(stored.encode())

    assert storable_json(text, "payload", limit=size) == stored
    with pytest.raises(PayloadTooLarge) as refused:
        storable_json(text, "payload", limit=size - 1)
    assert refused.value.size == size


def test_storable_json_non_ascii_is_written_unescaped_so_the_checked_size_is_the_stored_size() -> None:
    value = {"name": "é" * 1000, "emoji": "🙂" * 1000}
    text = storable_json(value, "payload")

    assert "\\u" not in text
    assert len(text.encode()) == 2 * 1000 + 4 * 1000 + len('{"name":"","emoji":""}')
    assert len(json.dumps(value).encode()) > 2 * len(text.encode())  # what ensure_ascii would have written


@given(containers, st.data(), unstorable_leaves)
def test_check_storable_unstorable_leaf_anywhere_is_refused_naming_its_path(
    value: Any, data: st.DataObject, leaf: tuple[Any, str]
) -> None:
    bad, problem = leaf
    path, parent = "input", value
    while True:
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        key = data.draw(st.sampled_from(keys))
        child = parent[key]
        if isinstance(child, dict | list) and child and data.draw(st.booleans()):
            path, parent = path + step(key), child
            continue
        parent[key] = bad
        path += step(key)
        break

    assume(len(path) <= 240)
    with pytest.raises(UnstorableValue) as refused:
        check_storable(value, "input")

    assert refused.value.path == path
    assert problem in refused.value.problem
    assert str(refused.value).startswith(f"{path}: ")


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity"])
def test_check_storable_literal_that_reads_as_non_finite_is_refused(literal: str) -> None:
    with pytest.raises(UnstorableValue, match=r"input\.price: .* not a finite number"):
        check_storable({"price": json.loads(literal)}, "input")


def test_check_storable_nesting_up_to_max_depth_is_stored_and_read_back_inside_an_envelope() -> None:
    text = storable_json(nested(MAX_DEPTH), "payload")
    # The value travels inside envelopes (a signal message, an export, an answer): room is left.
    envelope = '{"a":' * 100 + text + "}" * 100

    assert ANY.validate_json(envelope) is not None
    assert json.loads(text) == nested(MAX_DEPTH)


def test_check_storable_nesting_past_max_depth_is_refused_before_any_reader_fails() -> None:
    with pytest.raises(UnstorableValue, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_storable(nested(MAX_DEPTH + 1), "payload")
    with pytest.raises(UnstorableValue, match="nested deeper"):
        check_storable(json.loads("[" * 900 + "]" * 900), "payload")


def test_check_storable_self_containing_value_is_refused_not_looped() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnstorableValue, match="nested deeper"):
        check_storable(loop, "result")


@pytest.mark.parametrize("sign", [1, -1])
def test_check_storable_integer_digits_are_bounded_at_max_int_digits(sign: int) -> None:
    largest = sign * (10**MAX_INT_DIGITS - 1)
    text = storable_json(largest, "input")

    assert json.loads(text) == ANY.validate_json(text) == largest
    with pytest.raises(UnstorableValue, match=f"integer of {MAX_INT_DIGITS + 1} digits"):
        check_storable(sign * 10**MAX_INT_DIGITS, "input")


def test_check_storable_surrogate_in_a_key_is_refused_naming_the_key_escaped() -> None:
    with pytest.raises(UnstorableValue) as refused:
        check_storable({"meta": {"\ud83d": 1}}, "input")
    assert refused.value.path == "input.meta['\\ud83d']"
    assert refused.value.problem.startswith("a key holding a lone surrogate")
    str(refused.value).encode()  # the message itself is valid UTF-8: it can be answered and stored


def test_check_storable_model_fields_are_checked_through_the_models_serializer() -> None:
    class Quote(BaseModel):
        prices: list[float]

    with pytest.raises(UnstorableValue) as refused:
        storable_json(Quote(prices=[1.0, math.nan]), "result", via=TypeAdapter(Quote))
    assert refused.value.path == "result.prices[1]"


def test_storable_json_value_pydantic_cannot_serialize_is_unstorable_naming_it() -> None:
    with pytest.raises(UnstorableValue, match="result: not JSON-representable"):
        storable_json({"handle": object()}, "result")


def test_check_storable_huge_key_is_cut_in_the_path_so_the_error_stays_small() -> None:
    with pytest.raises(UnstorableValue) as refused:
        check_storable({"k" * 100_000: math.inf}, "payload")
    assert len(str(refused.value)) < 1000


def test_unstorable_value_is_terminal_and_survives_being_stored_and_rebuilt() -> None:
    error = UnstorableValue("input", "input.items[3].price", "inf is not a finite number")
    rebuilt = rebuild_error(ErrorInfo.of(error))

    assert isinstance(error, NonRetryableError)
    assert type(rebuilt) is UnstorableValue and str(rebuilt) == str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_storable_json_names_the_value_in_the_message_and_starts_the_path_at_root() -> None:
    with pytest.raises(UnstorableValue) as refused:
        storable_json({"total": math.inf}, "result of step 'charge'", root="result")
    assert refused.value.path == "result.total"
    assert "The result of step 'charge' cannot be stored" in str(refused.value)
