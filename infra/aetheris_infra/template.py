"""Read ``template.yaml`` (the single source of truth for Aetheris resources) without AWS.

``load_template`` parses the SAM template with a PyYAML ``SafeLoader`` subclass that turns every
CloudFormation short tag (``!Ref``, ``!GetAtt``, ``!Sub``, ...) into its long form (``{"Ref": "X"}``,
``{"Fn::GetAtt": ["A", "Arn"]}``) and keeps unquoted dates as strings, as CloudFormation does. The
result is the library's ``Template`` (``aetheris._local.template``: the intrinsic resolver).

``local_resources`` extracts what the embedded stack creates (parameters, conditions, mappings and
every table, queue and bucket) as the JSON document the library ships as ``resources.json``;
``python -m aetheris_infra.template`` rewrites that file, and ``tests/infra/test_packaged_resources.py``
fails while it differs from ``template.yaml``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import yaml

from aetheris._local.template import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    NO_VALUE,
    RESOURCES_PATH,
    Parameter,
    Resource,
    Template,
    TemplateError,
    UnresolvedReferenceError,
    references,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STACK_NAME",
    "DEFAULT_TEMPLATE_PATH",
    "LOCAL_RESOURCE_TYPES",
    "NO_VALUE",
    "CfnLoader",
    "Parameter",
    "Resource",
    "Template",
    "TemplateError",
    "UnresolvedReferenceError",
    "load_template",
    "local_resources",
    "references",
]

DEFAULT_TEMPLATE_PATH: Final = Path(__file__).resolve().parents[2] / "template.yaml"
# What the embedded stack creates; everything else in the template is deploy-only.
LOCAL_RESOURCE_TYPES: Final = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::S3::Bucket")
_SHORT_TAGS: Final = (
    *("Ref", "GetAtt", "Sub", "Join", "Select", "Split", "FindInMap", "ImportValue", "Base64", "GetAZs"),
    *("If", "Equals", "Not", "And", "Or", "Condition"),
)


class CfnLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that understands CloudFormation short tags and keeps timestamps as strings."""


def _tag_constructor(tag: str) -> Callable[[CfnLoader, yaml.Node], dict[str, Any]]:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                logical_id, dot, attribute = str(value).partition(".")
                if not dot or not logical_id or not attribute:
                    raise TemplateError(f"!GetAtt {value!r} is not of the form LogicalId.Attribute")
                value = [logical_id, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:  # pragma: no cover - PyYAML has no other node kinds
            raise TemplateError(f"unexpected node for !{tag}: {node!r}")
        return {key: value}

    return construct


def _timestamp_as_string(loader: CfnLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):  # pragma: no cover - the resolver only tags scalars
        raise TemplateError(f"unexpected timestamp node {node!r}")
    return str(loader.construct_scalar(node))


for _tag in _SHORT_TAGS:
    CfnLoader.add_constructor(f"!{_tag}", _tag_constructor(_tag))
CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def load_template(path: Path | None = None) -> Template:
    """Parse ``path`` (default: the repository's ``template.yaml``) into a ``Template``."""
    source = path or DEFAULT_TEMPLATE_PATH
    document = yaml.load(source.read_text(encoding="utf-8"), Loader=CfnLoader)  # a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{source} is not a CloudFormation template (no Resources section)")
    return Template(document=document, path=source)


def local_resources(template: Template) -> dict[str, Any]:
    """The part of ``template`` the embedded stack is made from, as the library ships it."""
    document = template.document
    resources = {
        logical_id: spec
        for logical_id, spec in (document.get("Resources") or {}).items()
        if spec.get("Type") in LOCAL_RESOURCE_TYPES
    }
    extracted = {
        section: document[section]
        for section in ("Parameters", "Conditions", "Mappings")
        if section in document
    }
    return {**extracted, "Resources": resources}


def render_resources(template: Template) -> str:
    """``local_resources`` as the text of ``resources.json`` (template order, one trailing newline)."""
    return json.dumps(local_resources(template), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the library's ``resources.json`` from ``template.yaml`` (``--check``: exit 1 if it differs)."""
    args = sys.argv[1:] if argv is None else argv
    text = render_resources(load_template())
    if "--check" in args:
        current = RESOURCES_PATH.read_text(encoding="utf-8") if RESOURCES_PATH.exists() else ""
        return 0 if current == text else 1
    RESOURCES_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
