"""``pip install aetheris[local]`` is all a user needs: write jobs, test them, run ``aetheris dev``.

Everything runs in a fresh venv (see ``conftest.py``) from a project directory outside the
repository, with a bare environment (no AWS settings): what works here works after a plain install.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from conftest import REPO, UserVenv

JOBS = """
from datetime import timedelta

from aetheris import App, JobContext, StepContext

app = App("mine")
CALLS: list[str] = []  # every real call of the greeter, as the outside world saw it


def _greet(name: str) -> str:
    CALLS.append(name)
    return f"hello {name}"


def greet(sctx: StepContext, name: str) -> str:
    return sctx.tool("greeter.greet", _greet, name)


@app.job("greet")
def greet_job(ctx: JobContext, name: str) -> dict:
    text = ctx.step(greet, name)
    approval = ctx.wait_for_signal("approval", timeout=timedelta(days=1))
    ctx.sleep(timedelta(minutes=5))
    return {"text": text, "approved_by": approval["by"]}


@app.job("echo")
def echo(ctx: JobContext, value: str) -> str:
    return ctx.step(lambda sctx, v: v.upper(), value, name="shout")
"""

USER_TEST = """
import sys

import aetheris
from aetheris.testing import LocalRuntime
from mypkg.jobs import CALLS, app

with LocalRuntime(app) as local:
    local.crash_at("after_record")  # the worker dies right after the tool's result is recorded
    job_id = local.start("greet", "ana")
    local.run_until_idle()
    waiting = local.get(job_id).status.value
    local.signal(job_id, "approval", {"by": "lee"})
    view = local.wait(job_id)

print(json.dumps({
    "status": view.status.value,
    "result": view.result,
    "waiting": waiting,
    "calls": CALLS,
    "crashes": len(local.crashes),
    "aetheris": aetheris.__file__,
    "path": sys.path,
}))
"""


def _project(root: Path) -> Path:
    package = root / "project" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(textwrap.dedent(JOBS))
    return package.parent


def test_wheel_fresh_venv_user_job_under_local_runtime_survives_crash_once(
    user_venv: UserVenv, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    (project / "check.py").write_text("import json\n" + USER_TEST)

    done = subprocess.run(
        [str(user_venv.python), "check.py"],
        cwd=project,
        env=user_venv.env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "COMPLETED"
    assert report["result"] == {"text": "hello ana", "approved_by": "lee"}
    assert report["waiting"] == "WAITING"
    assert report["calls"] == ["ana"]  # the crash after the record did not call the greeter again
    assert report["crashes"] == 1
    assert Path(report["aetheris"]).is_relative_to(user_venv.root)
    assert not any(str(entry).startswith(str(REPO)) for entry in report["path"])


def test_wheel_fresh_venv_local_runtime_loads_no_infra_and_import_no_moto(
    user_venv: UserVenv, tmp_path: Path
) -> None:
    probe = (
        "import sys, aetheris.testing, aetheris.handlers.worker, aetheris.llm\n"
        "assert aetheris.llm.price_table().price('us.anthropic.claude-3-5-haiku-20241022-v1:0')\n"
        "imported = {m.split('.')[0] for m in sys.modules}\n"
        "with aetheris.testing.LocalRuntime(aetheris.App('empty')):\n"
        "    pass\n"
        "entered = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(imported & {'aetheris_infra', 'moto', 'yaml'}),"
        " sorted(entered & {'aetheris_infra', 'functions'}))\n"
    )

    done = subprocess.run(
        [str(user_venv.python), "-c", probe],
        cwd=tmp_path,
        env=user_venv.env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"


def _call(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_wheel_fresh_venv_aetheris_dev_hosts_user_app_from_its_directory(
    user_venv: UserVenv, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    dev = subprocess.Popen(
        [str(user_venv.bin / "aetheris"), "--json", "dev", "--app", "mypkg.jobs:app", "--port", "0"],
        cwd=project,
        env=user_venv.env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dev.stdout is not None
        ready = json.loads(dev.stdout.readline() or "{}")
        assert "api_url" in ready, dev.stderr.read() if dev.stderr else ""
        api = ready["api_url"]

        started = _call(f"{api}/jobs", "POST", {"job_type": "echo", "input": "quiet"})
        deadline, job = time.monotonic() + 60, started
        while job["status"] != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.1)  # polling a real-clock server with a deadline, not synchronising
            job = _call(f"{api}/jobs/{started['job_id']}")
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=30)

    assert job["status"] == "COMPLETED"
    assert job["result"] == "QUIET"
    assert dev.returncode == 0
