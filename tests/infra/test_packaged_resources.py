"""The resource definitions the library ships are ``template.yaml``'s, and the library stands alone.

``aetheris/_local/resources.json`` is what ``LocalRuntime`` and ``aetheris dev`` bootstrap from
when the repository (and its ``template.yaml``) is not there: a plain ``pip install``. It is
generated from the template (``python -m aetheris_infra.template``); these tests fail as soon as
the two drift apart.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml

from aetheris._local.template import RESOURCES_PATH, load_resources
from aetheris_infra.template import (
    DEFAULT_TEMPLATE_PATH,
    LOCAL_RESOURCE_TYPES,
    CfnLoader,
    Template,
    load_template,
    local_resources,
    render_resources,
)

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "runtime" / "aetheris"


def test_packaged_resources_equal_what_template_yaml_declares() -> None:
    packaged = json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))

    assert packaged == local_resources(load_template()), (
        "aetheris/_local/resources.json differs from template.yaml: run `python -m aetheris_infra.template`"
    )


def test_packaged_resources_file_is_exactly_the_rendered_template() -> None:
    assert RESOURCES_PATH.read_text(encoding="utf-8") == render_resources(load_template())


def test_local_resources_changed_queue_in_template_differs_from_packaged(tmp_path: Path) -> None:
    document = yaml.load(DEFAULT_TEMPLATE_PATH.read_text(encoding="utf-8"), Loader=CfnLoader)
    document["Resources"]["StepQueue"]["Properties"]["VisibilityTimeout"] = 999

    drifted = local_resources(Template(document=document))

    assert drifted != json.loads(RESOURCES_PATH.read_text(encoding="utf-8"))


def test_local_resources_holds_every_table_queue_and_bucket_and_nothing_else() -> None:
    template = load_template()
    expected = {lid for lid, res in template.resources.items() if res.type in LOCAL_RESOURCE_TYPES}

    shipped = load_resources()

    assert set(shipped.resources) == expected
    assert {"JobsTable", "InboxTable", "StepQueue", "SignalQueue", "PayloadBucket"} <= expected
    assert shipped.parameter_values() == template.parameter_values()


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_library_modules_never_import_infra_or_functions() -> None:
    upward = {
        f"{path.relative_to(LIBRARY)}: {module}"
        for path in LIBRARY.rglob("*.py")
        for module in _imported_modules(path)
        if module.split(".")[0] in ("aetheris_infra", "functions", "agents")
    }

    assert upward == set()
