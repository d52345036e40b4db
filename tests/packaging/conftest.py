"""A user's machine: the wheel built from this tree, installed with ``[local]`` into a fresh venv.

The venv lives in a temporary directory outside the repository and is built once per session
(the wheel test and the ``aetheris init`` test share it). pip resolves ``aetheris[local]`` from
this machine's package index configuration and its cache; nothing of the repository is on the
venv's path, so what runs there is only what the wheel ships.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class UserVenv:
    root: Path
    wheel: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A bare environment: no AWS settings, no PYTHONPATH, this venv first on PATH."""
        return {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            **extra,
        }


def _run(command: list[str], cwd: Path, timeout: float = 600) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of this tree (no dependencies: they come from the index at install)."""
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], cwd=dist)
    (built,) = dist.glob("aetheris-*.whl")
    return built


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> UserVenv:
    root = tmp_path_factory.mktemp("user-venv")
    venv.create(root, with_pip=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, f"{wheel}[local]", "pytest"], cwd=root)
    return UserVenv(root, wheel)
