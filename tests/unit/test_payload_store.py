"""``Payloads`` without S3: what stays inline, which cap applies, what counts as a reference."""

from __future__ import annotations

import json
import re

import pytest

from aetheris import PayloadCorrupted, PayloadTooLarge, Settings, _serde
from aetheris._store.payloads import PayloadRef, Payloads, is_reference


def payloads(bucket: str | None) -> Payloads:
    settings = Settings(_env_file=None, payload_bucket=bucket)  # type: ignore[call-arg]
    return Payloads.from_settings(settings, None)


def test_payloads_cap_is_the_offload_cap_with_a_bucket_and_the_inline_cap_without() -> None:
    assert payloads("b").limit == Settings().max_offloaded_bytes
    assert payloads(None).limit == Settings().max_payload_bytes == 256 * 1024


def test_payloads_check_over_the_cap_is_payload_too_large_naming_the_value() -> None:
    with pytest.raises(PayloadTooLarge, match="result of step s1 is 262145 bytes"):
        _serde.dump("x" * (256 * 1024 - 1), _serde.ANY_ADAPTER, "result of step s1", payloads(None).limit)


def test_payloads_without_a_bucket_keep_every_text_inline_and_read_it_back_unchanged() -> None:
    text = json.dumps("x" * 100_000)
    store = payloads(None)
    assert store.offload("job", text) == text
    assert store.text(text) == text and store.text(None) is None


def test_payloads_reference_round_trips_and_no_json_text_looks_like_one() -> None:
    ref = PayloadRef(bucket="b", key="j/abc.json", bytes=3, sha256="abc")
    assert PayloadRef.parse(ref.stored()) == ref and is_reference(ref.stored())
    for value in ["@s3", {"@s3": {}}, ["@s3"], None, 1.5, True]:
        assert not is_reference(json.dumps(value))


def test_payloads_inline_only_refuses_a_reference_clearly() -> None:
    stored = PayloadRef(bucket="b", key="j/abc.json", bytes=3, sha256="abc").stored()
    with pytest.raises(PayloadCorrupted, match=re.escape("s3://b/j/abc.json")):
        Payloads.inline_only().text(stored)
