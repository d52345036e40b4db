"""moto's ``UpdateExpression`` handling made cheaper — the same checks, the same answers.

Profiling ``LocalRuntime`` showed moto spending most of an ``UpdateItem`` (the runtime's slot claim
and commit: ~20 ``SET`` actions each) on bookkeeping around its update-expression code, not in it:

- it tokenizes and parses the expression string on every request (twice: the response layer and the
  backend). The parse is a pure function of the string, and both callers only read the tree (the
  validator works on its own deep copy), so the tree is remembered per string;
- the validator deep-copies the tree with ``copy.deepcopy``; the same copy of moto's plain node
  objects (same sharing, same parent links; ``copy.deepcopy`` for anything else) is ~5x cheaper,
  and for a remembered tree it is ``pickle.loads`` of the tree pickled once when it was parsed
  (pickle rebuilds the same object graph as deepcopy: plain nodes, lists and atoms, sharing and
  parent links kept; ~2x cheaper again for a 20-action expression);
- every one of its ten tree walks rebuilds the walker's class→processor table at every node. The
  table is a literal of constant classes; it is built once per walker here;
- three of the walks — "at most one SET/ADD/REMOVE clause", "no two actions on overlapping paths"
  (both re-run at every nested clause: quadratic in the number of actions) and "no key attribute
  updated" — decide from the expression, ``ExpressionAttributeNames`` and the table's key names
  alone (they run first, before anything resolves values against the item). Once such a triple has
  passed a whole validation, those three walks are skipped for it; any other triple — and every
  failure — runs moto's code exactly as before.

Every value resolution, type check, function (``if_not_exists``, ``list_append``), arithmetic and
the execution against the item stay moto's own code, unchanged.
"""

from __future__ import annotations

import copy
import copyreg
import functools
import importlib
import pickle
from typing import Any

_PASSED_ATTRIBUTE = "_aetheris_passed"  # on a remembered tree: the name maps it validated with
_PICKLED_ATTRIBUTE = "_aetheris_pickled"  # on a remembered tree: itself, pickled when parsed


def install() -> None:
    """Patch moto's update-expression parser, validator and tree walker (call once, under a lock)."""
    # moto's parsing modules are untyped (``# type: ignore`` files): handled as Any here.
    ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
    validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")
    parser_type: Any = importlib.import_module("moto.dynamodb.parsing.expressions").UpdateExpressionParser

    parse = parser_type.make.__func__
    parser_type.make = classmethod(_remembered(parse))
    validators.deepcopy = _copying(ast_nodes.Node)
    walker = ast_nodes.DepthFirstTraverser
    walker.nodes_to_be_processed = _kinds
    walker.process = _process
    walker.traverse_node_recursively = _walker(ast_nodes.Node, walker.pre_processing_of_child)
    _skip_passed_checks(
        validators.UpdateExpressionValidator,
        (
            validators.ActionCountValidator,
            validators.OverlappingPathsValidator,
            validators.UpdateHashRangeKeyValidator,
        ),
    )


def _remembered(parse: Any) -> Any:
    @functools.lru_cache(maxsize=1024)
    def tree(cls: Any, expression: str) -> Any:
        parsed = parse(cls, expression)
        try:
            pickled: bytes | None = pickle.dumps(parsed, pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - something pickle cannot rebuild: copied node by node instead
            pickled = None
        setattr(parsed, _PICKLED_ATTRIBUTE, pickled)  # (both set after pickling: not in the copies)
        setattr(parsed, _PASSED_ATTRIBUTE, set())
        return parsed

    def make(cls: Any, expression_str: Any) -> Any:
        if not isinstance(expression_str, str):
            return parse(cls, expression_str)
        return tree(cls, expression_str)

    return make


def _memory_key(names: Any, table: Any) -> tuple[Any, ...] | None:
    """What the three whole-expression checks depend on besides the expression: the attribute
    names, and the table's key attributes (no updating a key)."""
    try:
        return (frozenset((names or {}).items()), tuple(getattr(table, "table_key_attrs", None) or ()))
    except TypeError:  # an unhashable value: no memory for it, moto's checks run
        return None


def _skip_passed_checks(validator_type: Any, whole_expression_checks: tuple[type, ...]) -> None:
    original_init = validator_type.__init__
    original_validate = validator_type.validate

    def __init__(
        self: Any, expression: Any, expression_attribute_names: Any, *args: Any, **kwargs: Any
    ) -> None:
        original_init(self, expression, expression_attribute_names, *args, **kwargs)
        passed: set[Any] | None = getattr(expression, _PASSED_ATTRIBUTE, None)
        key = _memory_key(expression_attribute_names, getattr(self, "table", None))
        self._aetheris_memory = (passed, key)
        if passed is not None and key is not None and key in passed:
            self.processors = [p for p in self.processors if not isinstance(p, whole_expression_checks)]

    def validate(self: Any) -> Any:
        validated = original_validate(self)
        passed, key = getattr(self, "_aetheris_memory", (None, None))
        if passed is not None and key is not None:
            passed.add(key)  # the whole validation passed: so did the two whole-expression checks
        return validated

    validator_type.__init__ = __init__
    validator_type.validate = validate


def _kinds(self: Any) -> tuple[type, ...]:
    return _table(self)[0]


def _table(self: Any) -> tuple[tuple[type, ...], tuple[tuple[type, Any], ...]]:
    """(the kinds, (kind, processor) pairs) of this walker's processing map, built once."""
    table = self.__dict__.get("_aetheris_table")
    if table is None:
        pairs = tuple(self._processing_map().items())
        table = (tuple(kind for kind, _ in pairs), pairs)
        self.__dict__["_aetheris_table"] = table
    return table  # type: ignore[no-any-return]


def _process(self: Any, node: Any) -> Any:
    for kind, processor in _table(self)[1]:
        if isinstance(node, kind):
            return processor(node)
    return None


def _walker(node_type: type, no_hook: Any) -> Any:
    """``no_hook``: the base walker's ``pre_processing_of_child``, a no-op unless a walker overrides it."""
    is_node: dict[type, bool] = {}  # isinstance(x, Node) by type: Node is an ABC, the check is slow

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        """moto's ``DepthFirstTraverser.traverse_node_recursively``, step for step; the isinstance
        checks are answered per type (a class's answer never changes) and the no-op hook is not called."""
        kind = type(node)
        node_kind = is_node.get(kind)
        if node_kind is None:
            node_kind = is_node[kind] = isinstance(node, node_type)
        if node_kind:
            parent_node = node.parent
            if node.children is not None:
                hook = type(self).pre_processing_of_child
                for i, child_node in enumerate(node.children):
                    if hook is not no_hook:
                        self.pre_processing_of_child(node, i)
                    self.traverse_node_recursively(child_node, i)
            if _processes(self, kind):
                node = self.process(node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
        return node

    return traverse_node_recursively


def _processes(walker: Any, kind: type) -> bool:
    """``isinstance(node, walker.nodes_to_be_processed())``, answered once per node type."""
    answers: dict[type, bool] | None = walker.__dict__.get("_aetheris_processes")
    if answers is None:
        answers = walker.__dict__["_aetheris_processes"] = {}
    answer = answers.get(kind)
    if answer is None:
        answer = answers[kind] = issubclass(kind, walker.nodes_to_be_processed())
    return answer


def _copying(node_type: type) -> Any:
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        """``copy.deepcopy`` as moto's validator module uses it: moto's plain node objects, lists
        and atoms are copied here (sharing and parent links kept through ``memo``, as deepcopy
        does, ~5x cheaper); anything else goes to ``copy.deepcopy`` with the same memo. A whole
        remembered tree is unpickled from the copy pickled when it was parsed."""
        if memo is None and type(value) is not list and isinstance(value, node_type):
            pickled = value.__dict__.get(_PICKLED_ATTRIBUTE)
            if pickled is not None:
                return pickle.loads(pickled)  # our own bytes, made from moto's tree
        return _copy(node_type, value, {} if memo is None else memo)

    return deepcopy


_ATOMS = frozenset({str, int, float, bool, type(None)})
_OURS = frozenset({_PASSED_ATTRIBUTE, _PICKLED_ATTRIBUTE})


def _copy(node_type: type, value: Any, memo: dict[int, Any]) -> Any:
    kind: Any = type(value)
    if kind in _ATOMS:
        return value
    seen = memo.get(id(value))
    if seen is not None:
        return seen
    if kind is list:
        copied_list: list[Any] = []
        memo[id(value)] = copied_list
        copied_list.extend([_copy(node_type, item, memo) for item in value])
        return copied_list
    if _plain_node(kind, node_type):
        copied = kind.__new__(kind)
        memo[id(value)] = copied
        state = copied.__dict__
        for key, item in value.__dict__.items():
            if key not in _OURS:  # our memory stays with the remembered tree
                state[key] = _copy(node_type, item, memo)
        return copied
    return copy.deepcopy(value, memo)


@functools.cache
def _plain_node(kind: type, node_type: type) -> bool:
    """A node class that deepcopy copies as a bare ``__new__`` plus its ``__dict__`` copied."""
    if not issubclass(kind, node_type):
        return False
    hooks = ("__deepcopy__", "__setstate__", "__slots__", "__getnewargs__", "__getnewargs_ex__")
    inherited = all(
        getattr(kind, name) is getattr(object, name)
        for name in ("__reduce_ex__", "__reduce__", "__getstate__")
    )
    return inherited and kind not in copyreg.dispatch_table and not any(hasattr(kind, hook) for hook in hooks)
