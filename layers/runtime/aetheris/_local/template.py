"""A CloudFormation template in long form, and the resource definitions the local stack is made from.

``Template`` wraps a parsed template document (intrinsics in their long form: ``{"Ref": "X"}``,
``{"Fn::GetAtt": ["A", "Arn"]}``). ``load_resources`` reads the definitions this package ships
(``resources.json``: the parameters, conditions and the tables, queues and buckets of the
repository's ``template.yaml``, extracted by ``aetheris_infra.template.local_resources`` and kept
equal to it by a test), so the embedded stack needs neither the repository nor a YAML parser.
``Template.resolve`` is a small evaluator for the intrinsics the local stack needs (``Ref``,
``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::If`` with the
template's ``Conditions``, ``Fn::FindInMap``, ``Fn::Base64``) against a mapping of logical ids
(and ``"LogicalId.Attribute"`` for ``Fn::GetAtt``) to physical values. Parameters take their
``Default`` unless overridden; ``Ref`` of a parameter is always a string, as on CloudFormation.
``Fn::ImportValue`` and ``Fn::GetAZs`` need a real account and raise ``UnresolvedReferenceError``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STACK_NAME",
    "NO_VALUE",
    "Parameter",
    "Resource",
    "Template",
    "TemplateError",
    "UnresolvedReferenceError",
    "load_resources",
    "references",
]

RESOURCES_PATH: Final = Path(__file__).with_name("resources.json")
DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT_ID: Final = "123456789012"  # moto's default account; LocalStack uses 000000000000
DEFAULT_STACK_NAME: Final = "aetheris-local"

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template is malformed or uses something this loader does not support."""


class UnresolvedReferenceError(TemplateError):
    """A ``Ref``/``Fn::GetAtt``/``Fn::Sub`` names something the resolver was given no value for."""


class _NoValue:
    """The value of ``Ref AWS::NoValue``: the enclosing property or list item is dropped."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


def references(value: Any) -> set[str]:
    """Logical ids (and parameter names) that ``Ref``, ``Fn::GetAtt`` or ``Fn::Sub`` in ``value`` use."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        if len(value) == 1 and "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        elif len(value) == 1 and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(str(target[0] if isinstance(target, list) else target.split(".", 1)[0]))
        elif len(value) == 1 and "Fn::Sub" in value:
            body = value["Fn::Sub"]
            text, variables = (body[0], body[1]) if isinstance(body, list) else (body, {})
            for name in _SUB_VARIABLE.findall(str(text)):
                if not name.startswith("!") and name not in variables:
                    found.add(name.split(".", 1)[0])
            found |= references(variables)
        else:
            for item in value.values():
                found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}


@dataclass(frozen=True)
class Parameter:
    """One entry of the template's ``Parameters`` section."""

    name: str
    type: str
    default: str | None
    allowed_values: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Resource:
    """One entry of the template's ``Resources`` section (properties unresolved, long-form intrinsics)."""

    logical_id: str
    type: str
    properties: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _as_parameter_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_parameter_string(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class Template:
    """A parsed template: typed views of its sections plus the intrinsic-function resolver."""

    document: Mapping[str, Any]
    path: Path | None = None

    @property
    def parameters(self) -> dict[str, Parameter]:
        """The ``Parameters`` section, defaults as strings (``Ref`` of a parameter is a string)."""
        section: Mapping[str, Any] = self.document.get("Parameters") or {}
        return {
            name: Parameter(
                name=name,
                type=str(spec.get("Type", "String")),
                default=None if spec.get("Default") is None else _as_parameter_string(spec["Default"]),
                allowed_values=tuple(_as_parameter_string(v) for v in spec.get("AllowedValues", ())),
                description=str(spec.get("Description", "")),
            )
            for name, spec in section.items()
        }

    @property
    def resources(self) -> dict[str, Resource]:
        """Every resource of the template, keyed by logical id."""
        section: Mapping[str, Any] = self.document.get("Resources") or {}
        result: dict[str, Resource] = {}
        for logical_id, spec in section.items():
            depends_on = spec.get("DependsOn", ())
            result[logical_id] = Resource(
                logical_id=logical_id,
                type=str(spec["Type"]),
                properties=spec.get("Properties") or {},
                depends_on=(depends_on,) if isinstance(depends_on, str) else tuple(depends_on),
                metadata=spec.get("Metadata") or {},
            )
        return result

    @property
    def outputs(self) -> dict[str, Any]:
        """The ``Outputs`` section (values unresolved)."""
        return dict(self.document.get("Outputs") or {})

    def resources_of_type(self, type_name: str) -> dict[str, Resource]:
        """Resources whose ``Type`` is ``type_name`` (e.g. ``"AWS::SQS::Queue"``), in template order."""
        return {lid: res for lid, res in self.resources.items() if res.type == type_name}

    def function_environment(self, logical_id: str) -> dict[str, Any]:
        """A function's environment variables: ``Globals.Function`` merged with its own (unresolved)."""
        resource = self.resources.get(logical_id)
        if resource is None or resource.type not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            raise TemplateError(f"{logical_id!r} is not a function of this template")
        merged: dict[str, Any] = {}
        if resource.type == "AWS::Serverless::Function":
            globals_fn: Mapping[str, Any] = (self.document.get("Globals") or {}).get("Function") or {}
            merged.update((globals_fn.get("Environment") or {}).get("Variables") or {})
        merged.update((resource.properties.get("Environment") or {}).get("Variables") or {})
        return merged

    def parameter_values(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every parameter with a value: its ``Default`` unless ``overrides`` gives one."""
        declared = self.parameters
        unknown = set(overrides or {}) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        values = {name: p.default for name, p in declared.items() if p.default is not None}
        values.update(overrides or {})
        for name, value in values.items():
            allowed = declared[name].allowed_values
            if allowed and value not in allowed:
                raise TemplateError(f"parameter {name}={value!r} is not one of {list(allowed)}")
        return values

    def resolve(
        self,
        value: Any,
        refs: Mapping[str, str],
        *,
        parameters: Mapping[str, str] | None = None,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        stack_name: str = DEFAULT_STACK_NAME,
    ) -> Any:
        """Evaluate the intrinsics in ``value``.

        ``refs`` maps a logical id to what ``Ref`` returns and ``"LogicalId.Attribute"`` to what
        ``Fn::GetAtt`` returns; it wins over parameters. Unknown names raise
        ``UnresolvedReferenceError``; ``Ref AWS::NoValue`` drops the enclosing entry.
        """
        names: dict[str, str] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        names.update(self.parameter_values(parameters))
        names.update(refs)
        return _Resolver(self.document, names).value(value)


class _Resolver:
    """Evaluates long-form intrinsics against one fixed name table."""

    def __init__(self, document: Mapping[str, Any], names: Mapping[str, str]) -> None:
        self._document = document
        self._names = names
        self._intrinsics = self._intrinsic_table()

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.value(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._intrinsics.get(key)
            if handler is not None:
                return handler(arg)
        return {k: v for k, v in ((k, self.value(item)) for k, item in value.items()) if v is not NO_VALUE}

    def _intrinsic_table(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": lambda arg: self.value(arg[1])[int(self.value(arg[0]))],
            "Fn::Split": lambda arg: str(self.value(arg[1])).split(str(self.value(arg[0]))),
            "Fn::If": self._if,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": lambda arg: base64.b64encode(str(self.value(arg)).encode()).decode(),
            "Fn::ImportValue": self._unsupported("Fn::ImportValue"),
            "Fn::GetAZs": self._unsupported("Fn::GetAZs"),
        }

    def _lookup(self, name: str, what: str) -> str:
        try:
            return self._names[name]
        except KeyError:
            raise UnresolvedReferenceError(f"{what}: no value for {name!r}") from None

    def _ref(self, name: str) -> Any:
        return NO_VALUE if name == "AWS::NoValue" else self._lookup(name, f"Ref {name}")

    def _get_att(self, arg: Any) -> str:
        logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        return self._lookup(f"{logical_id}.{self.value(attribute)}", f"Fn::GetAtt {logical_id}")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg[0], self.value(arg[1])) if isinstance(arg, list) else (arg, {})

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self._get_att(name)
            return self._lookup(name, f"Fn::Sub {text!r}")

        return _SUB_VARIABLE.sub(substitute, str(text))

    def _join(self, arg: Any) -> str:
        delimiter, items = arg
        return str(delimiter).join(str(item) for item in self.value(items))

    def _if(self, arg: Any) -> Any:
        condition, when_true, when_false = arg
        return self.value(when_true if self._condition(condition) else when_false)

    def _condition(self, spec: Any) -> bool:
        if isinstance(spec, str):  # a condition name
            conditions: Mapping[str, Any] = self._document.get("Conditions") or {}
            if spec not in conditions:
                raise UnresolvedReferenceError(f"unknown condition {spec!r}")
            return self._condition(conditions[spec])
        if not isinstance(spec, dict) or len(spec) != 1:
            raise TemplateError(f"not a condition: {spec!r}")
        ((key, arg),) = spec.items()
        if key == "Condition":
            return self._condition(str(arg))
        if key == "Fn::Equals":
            left, right = (_as_parameter_string(self.value(a)) for a in arg)
            return left == right
        if key == "Fn::Not":
            return not self._condition(arg[0])
        if key == "Fn::And":
            return all(self._condition(c) for c in arg)
        if key == "Fn::Or":
            return any(self._condition(c) for c in arg)
        raise TemplateError(f"not a condition function: {key}")

    def _find_in_map(self, arg: Any) -> Any:
        name, top, second = (str(self.value(a)) for a in arg[:3])
        mappings: Mapping[str, Any] = self._document.get("Mappings") or {}
        try:
            return self.value(mappings[name][top][second])
        except KeyError:
            raise UnresolvedReferenceError(f"Fn::FindInMap: no {name}/{top}/{second}") from None

    @staticmethod
    def _unsupported(name: str) -> Callable[[Any], Any]:
        def fail(arg: Any) -> Any:
            raise UnresolvedReferenceError(f"{name} {arg!r} needs a deployed account; not resolved locally")

        return fail


def load_resources(path: Path | None = None) -> Template:
    """The resource definitions shipped with this package (or the JSON document at ``path``)."""
    source = path or RESOURCES_PATH
    document = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{source} is not a CloudFormation template (no Resources section)")
    return Template(document=document, path=source)
