"""``aetheris init DIR``: a project of the user's own that tests, validates and deploys their App.

The scaffold's own ``make test`` runs in the fresh venv the wheel was installed into (the
Makefile's ``VENV`` and ``AETHERIS`` point it there), and ``sam validate --lint`` runs from the
tools venv (skipped without it, as ``tests/infra/test_sam.py`` is).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, UserVenv

from aetheris._local.template import load_resources
from aetheris_infra.cli import main
from aetheris_infra.template import load_template, local_resources

TOOLS = Path(os.environ.get("AETHERIS_TOOLS_VENV", REPO / ".venv-tools")) / "bin"
HANDLERS = {
    "WorkerFunction": "aetheris.handlers.worker.handler",
    "SignalsFunction": "aetheris.handlers.signals.handler",
    "SweeperFunction": "aetheris.handlers.sweeper.handler",
    "ApiFunction": "aetheris.handlers.api.handler",
}


def _init(directory: Path, *args: str) -> int:
    return main(["--json", "init", str(directory), *args])


def test_init_scaffold_make_test_passes_with_the_installed_wheel(user_venv: UserVenv, tmp_path: Path) -> None:
    project = tmp_path / "support-bot"
    env = user_venv.env(tmp_path)
    made = subprocess.run(
        [str(user_venv.bin / "aetheris"), "--json", "init", str(project)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["app"] == "support_bot.jobs:app"

    tested = subprocess.run(
        ["make", "test", f"VENV={user_venv.root}", f"AETHERIS={user_venv.wheel}[local]"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout


@pytest.mark.skipif(not (TOOLS / "sam").exists(), reason="run `make tools` (make test does)")
def test_init_scaffold_template_passes_sam_validate_lint(tmp_path: Path) -> None:
    project = tmp_path / "my-agent"
    assert _init(project) == 0

    validated = subprocess.run(
        [str(TOOLS / "sam"), "validate", "--lint", "--region", "us-east-1"],
        cwd=project,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "is a valid SAM Template" in validated.stdout + validated.stderr


def test_init_scaffold_template_hosts_the_users_app_on_the_runtime_handlers(tmp_path: Path) -> None:
    assert _init(tmp_path / "billing", "--package", "billing_jobs") == 0
    template = load_template(tmp_path / "billing" / "template.yaml")

    functions = template.resources_of_type("AWS::Serverless::Function")

    assert template.parameters["AetherisApp"].default == "billing_jobs.jobs:app"
    assert template.document["Globals"]["Function"]["Environment"]["Variables"]["AETHERIS_APP"] == {
        "Ref": "AetherisApp"
    }
    assert {name: fn.properties["Handler"] for name, fn in functions.items()} == HANDLERS
    assert (tmp_path / "billing" / "src" / "billing_jobs" / "jobs.py").is_file()


def test_init_scaffold_storage_is_the_packaged_runtime_storage(tmp_path: Path) -> None:
    assert _init(tmp_path / "p") == 0

    scaffolded = local_resources(load_template(tmp_path / "p" / "template.yaml"))

    assert scaffolded["Resources"] == load_resources().document["Resources"]


def test_init_into_non_empty_directory_is_a_usage_error_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    code = _init(tmp_path)

    assert code == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_init_directory_name_that_is_no_identifier_needs_package(tmp_path: Path) -> None:
    assert _init(tmp_path / "123") == 2
    assert _init(tmp_path / "123", "--package", "numbers") == 0
