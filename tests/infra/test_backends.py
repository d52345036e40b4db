"""Choosing where the local stack's DynamoDB and SQS live."""

from __future__ import annotations

import pytest

from aetheris_infra.backends import chosen_backend, localstack_endpoint


@pytest.mark.parametrize(
    "value, expected", [("", "moto"), ("moto-server", "moto-server"), ("LocalStack", "localstack")]
)
def test_backend_from_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("AETHERIS_BACKEND", value)
    assert chosen_backend() == expected


def test_backend_unknown_value_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERIS_BACKEND", "dynalite")
    with pytest.raises(ValueError, match="moto, moto-server, localstack"):
        chosen_backend()


def test_localstack_endpoint_follows_localstack_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4599")
    assert localstack_endpoint() == "http://127.0.0.1:4599"
