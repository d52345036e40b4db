"""The template and the code agree: key and index names, TTL, environment, handlers."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from aetheris._store import schema
from aetheris.config import Settings
from aetheris_infra.template import load_template

TEMPLATE = load_template()
FUNCTIONS = sorted(TEMPLATE.resources_of_type("AWS::Serverless::Function"))


def table(logical_id: str) -> dict[str, Any]:
    return dict(TEMPLATE.resources[logical_id].properties)


def keys(schema_list: list[dict[str, str]]) -> dict[str, str]:
    return {k["KeyType"]: k["AttributeName"] for k in schema_list}


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"AETHERIS_{name.upper()}")
    return names


def test_contract_jobs_table_keys_indexes_and_ttl_match_the_store() -> None:
    jobs = table("JobsTable")
    assert keys(jobs["KeySchema"]) == {"HASH": schema.PK, "RANGE": schema.SK}
    indexes = {i["IndexName"]: keys(i["KeySchema"]) for i in jobs["GlobalSecondaryIndexes"]}
    assert indexes[schema.STATUS_INDEX] == {"HASH": schema.STATUS_INDEX_PK, "RANGE": schema.STATUS_INDEX_SK}
    assert indexes[schema.DUE_INDEX] == {"HASH": schema.DUE_INDEX_PK, "RANGE": schema.DUE_INDEX_SK}
    types = {a["AttributeName"]: a["AttributeType"] for a in jobs["AttributeDefinitions"]}
    assert types[schema.DUE_INDEX_SK] == "N", "due_at is stored as epoch milliseconds"
    assert jobs["TimeToLiveSpecification"]["AttributeName"] == schema.TTL_ATTRIBUTE


def test_contract_inbox_table_is_keyed_by_job_and_signal_id() -> None:
    assert keys(table("InboxTable")["KeySchema"]) == {"HASH": "pk", "RANGE": "sk"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_contract_every_function_gets_the_settings_the_runtime_needs(function: str) -> None:
    env = TEMPLATE.function_environment(function)
    needed = {
        "AETHERIS_JOBS_TABLE",
        "AETHERIS_INBOX_TABLE",
        "AETHERIS_STEP_QUEUE_URL",
        "AETHERIS_SIGNAL_QUEUE_URL",
        "AETHERIS_APP",
    }
    assert needed <= set(env)
    # The model's: aetheris.llm reads the region, the example agent the model id.
    model = {"AETHERIS_BEDROCK_MODEL_ID", "AETHERIS_BEDROCK_REGION"}
    unknown = {name for name in env if name.startswith("AETHERIS_")} - settings_env_names() - model
    assert not unknown, f"{function} sets variables the runtime never reads: {unknown}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_contract_every_handler_in_the_template_imports(function: str) -> None:
    module_name, _, attribute = str(TEMPLATE.resources[function].properties["Handler"]).rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    assert callable(handler)
