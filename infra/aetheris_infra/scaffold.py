"""``aetheris init DIR``: a project of the user's own, ready to test, run locally and deploy.

The files come from ``project_template/`` (shipped in the package): a SAM template that deploys
the user's App (parameter ``AetherisApp``, ``module:app``) on a layer built from the aetheris
package, one example job, its tests on ``LocalRuntime`` (crash injection, the fake clock, a
signal), a Makefile (``make test`` / ``make dev`` / ``make deploy``), ``pyproject.toml`` and a
README. ``{{name}}`` placeholders are replaced; ``PKG`` in a path is the package name.

The template's tables, queues and bucket are not copied by hand: they are the runtime's own
definitions (``aetheris._local.resources.json``, equal to the repository's ``template.yaml``),
written out as YAML, together with the parameters they reference — so a scaffolded stack always
has the storage its runtime version expects.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

import yaml

from aetheris._local.template import load_resources, references

__all__ = ["InitError", "Project", "scaffold"]

TEMPLATE_DIR: Final = Path(__file__).with_name("project_template")
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")
_RENAMES: Final = {"gitignore": ".gitignore"}
# Parameters the scaffold declares itself (with descriptions aimed at the user's stack).
_OWN_PARAMETERS: Final = ("AetherisApp", "LeaseSeconds", "LogLevel")


class InitError(ValueError):
    """The directory or the names given cannot make a project."""


@dataclass(frozen=True)
class Project:
    directory: Path
    package: str
    app: str
    files: tuple[Path, ...]


def runtime_version() -> str:
    """The installed aetheris distribution's version (what the scaffold pins)."""
    try:
        return version("aetheris")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "2.0.0a1"


def package_name(directory: Path, given: str | None = None) -> str:
    """``given``, else the directory's name made a Python identifier (``my-agent`` → ``my_agent``)."""
    name = given or re.sub(r"\W+", "_", directory.resolve().name).strip("_").lower()
    if not name.isidentifier() or keyword.iskeyword(name) or name in ("aetheris", "tests", "test"):
        raise InitError(f"{name!r} cannot be the package name; pass --package NAME (a Python identifier)")
    return name


def scaffold(directory: Path, package: str | None = None, *, force: bool = False) -> Project:
    """Write the project into ``directory`` (created; it must be empty unless ``force``)."""
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InitError(f"{directory} is not empty; pick a new directory (or pass --force to write into it)")
    name = package_name(directory, package)
    values = {
        "package": name,
        "project": directory.resolve().name,
        "app": f"{name}.jobs:app",
        "version": runtime_version(),
        **_storage(),
    }
    written: list[Path] = []
    for source in sorted(TEMPLATE_DIR.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE_DIR).with_suffix("")
        parts = [_RENAMES.get(part, name if part == "PKG" else part) for part in relative.parts]
        target = directory.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_render(source.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(target)
    return Project(directory, name, str(values["app"]), tuple(written))


def _render(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise InitError(f"the project template uses an unknown placeholder {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(value, text)


def _storage() -> dict[str, str]:
    """The runtime's resources and the parameters they use, as YAML blocks of the SAM template."""
    shipped = load_resources()
    resources: dict[str, Any] = dict(shipped.document["Resources"])
    used = references(resources) & set(shipped.document.get("Parameters") or {})
    parameters = {
        name: spec
        for name, spec in shipped.document["Parameters"].items()
        if name in used - set(_OWN_PARAMETERS)
    }
    return {"resources": _indent(resources), "parameters": _indent(parameters) if parameters else ""}


def _indent(section: dict[str, Any]) -> str:
    text = yaml.safe_dump(section, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
    return "".join(f"  {line}\n" if line else "\n" for line in text.splitlines())
