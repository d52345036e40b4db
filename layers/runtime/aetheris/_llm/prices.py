"""What a model call costs: the price table (``prices.json``, one file with its date) and the sum.

Prices are US dollars per million tokens, per model id, for input, output, cache-read and
cache-write tokens (a missing cache price is the input price: what the model charges without a
cache). A cross-region inference profile (``us.anthropic...``) or a model ARN is priced as its
model. A model that is not in the table has no cost (``None``): the call is still recorded, with
its usage, so a cost can be computed later; nothing is guessed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, computed_field

PRICES_PATH: Final = Path(__file__).with_name("prices.json")
# Geography prefixes of Bedrock's cross-region inference profiles.
_PROFILE_PREFIXES: Final = frozenset({"us", "eu", "apac", "us-gov", "global", "ca", "jp", "au"})


class Usage(BaseModel):
    """Tokens of one call, as Converse reports them (``inputTokens`` excludes cached tokens)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def of_converse(cls, usage: dict[str, object] | None) -> Usage:
        usage = usage or {}

        def count(key: str) -> int:
            value = usage.get(key, 0)
            return int(value) if isinstance(value, int | float) else 0

        return cls(
            input_tokens=count("inputTokens"),
            output_tokens=count("outputTokens"),
            cache_read_tokens=count("cacheReadInputTokens"),
            cache_write_tokens=count("cacheWriteInputTokens"),
        )


class Price(BaseModel):
    model_config = ConfigDict(frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> float:
        cache_read = self.input if self.cache_read is None else self.cache_read
        cache_write = self.input if self.cache_write is None else self.cache_write
        total = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
        )
        return round(total / 1_000_000, 10)


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True)

    as_of: str
    currency: str
    unit: str
    source: str
    models: dict[str, Price]

    def price(self, model_id: str) -> Price | None:
        return self.models.get(base_model_id(model_id))


def base_model_id(model_id: str) -> str:
    """The model a model id, inference profile id or ARN names (``us.x.y-v1:0`` → ``x.y-v1:0``)."""
    name = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    prefix, dot, rest = name.partition(".")
    return rest if dot and prefix in _PROFILE_PREFIXES else name


@lru_cache(maxsize=1)
def price_table() -> PriceTable:
    return PriceTable.model_validate(json.loads(PRICES_PATH.read_text(encoding="utf-8")))
