"""The template deploys: cfn-lint, the SAM transform and `sam build` all succeed, offline.

They run from the tools venv that `make test` creates (`.venv-tools`: SAM CLI and cfn-lint pin
their own boto3 and pydantic). Without it — running pytest by hand — these tests are skipped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aetheris_infra.template import load_template
from tests.infra import iam

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("AETHERIS_TOOLS_VENV", ROOT / ".venv-tools")) / "bin"
TEMPLATE = ROOT / "template.yaml"

needs_tools = pytest.mark.skipif(not (TOOLS / "sam").exists(), reason="run `make tools` (make test does)")

TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():  # what `sam package` does: code goes to S3
    props = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://aetheris-artifacts/" + props[key].strip("/")
print(json.dumps(transform(template, {}, NoManagedPolicies())))
"""


@needs_tools
def test_sam_template_passes_cfn_lint_with_no_errors() -> None:
    run = subprocess.run([TOOLS / "cfn-lint", TEMPLATE], capture_output=True, text=True, timeout=300)
    assert run.returncode & 2 == 0, run.stdout + run.stderr  # bit 2: errors (4 warnings, 8 info)


@needs_tools
def test_sam_transform_produces_cloudformation_with_every_function() -> None:
    run = subprocess.run(
        [TOOLS / "python", "-c", TRANSFORM, TEMPLATE], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    resources = json.loads(run.stdout)["Resources"]
    functions = {k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    assert {"WorkerFunction", "SignalsFunction", "SweeperFunction"} <= functions
    mappings = [v for v in resources.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mappings and all(
        m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings
    )


@needs_tools
def test_sam_transform_keeps_the_jwt_authorizer_on_every_route_of_the_http_api(tmp_path: Path) -> None:
    run = subprocess.run(
        [TOOLS / "python", "-c", TRANSFORM, TEMPLATE], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    (tmp_path / "transformed.json").write_text(run.stdout)
    transformed = load_template(tmp_path / "transformed.json")
    (api,) = transformed.resources_of_type("AWS::ApiGatewayV2::Api").values()
    jwt = {
        "ApiAuth": "JWT",
        "JwtIssuer": "https://issuer.example.com/",
        "JwtAudience": "aetheris-api",
    }
    body = transformed.resolve(api.properties["Body"], {"ApiFunction.Arn": "arn:function"}, parameters=jwt)
    authorizer = body["components"]["securitySchemes"]["JWT"]["x-amazon-apigateway-authorizer"]
    operations = [
        op
        for path, methods in body["paths"].items()
        if not path.startswith("/ui")  # the UI's static files are open in every mode (no data)
        and not path.startswith("/callbacks/")  # their callback token is their credential
        for op in methods.values()
    ]
    callbacks = [body["paths"][f"/callbacks/{verb}"]["post"] for verb in ("succeed", "fail")]
    raw_scheme = api.properties["Body"]["components"]["securitySchemes"]["JWT"]["Fn::If"][1]
    raw_config = raw_scheme["x-amazon-apigateway-authorizer"]["jwtConfiguration"]

    assert (authorizer["type"], authorizer["identitySource"]) == ("jwt", "$request.header.Authorization")
    assert authorizer["jwtConfiguration"]["issuer"] == "https://issuer.example.com/"
    # A CommaDelimitedList: CloudFormation passes the audiences on as the list the authorizer takes.
    assert raw_config["audience"] == {"Ref": "JwtAudience"}
    assert transformed.parameters["JwtAudience"].type == "CommaDelimitedList"
    assert len(operations) >= 8
    assert all(op["security"] == [{"JWT": []}] for op in operations)
    assert all(op["x-amazon-apigateway-integration"]["type"] == "aws_proxy" for op in operations)
    assert [op["security"] for op in callbacks] == [[], []]
    assert all(op["x-amazon-apigateway-integration"]["type"] == "aws_proxy" for op in callbacks)


@needs_tools
def test_sam_transform_adds_no_role_no_managed_policy_and_no_wildcard_grant(tmp_path: Path) -> None:
    run = subprocess.run(
        [TOOLS / "python", "-c", TRANSFORM, TEMPLATE], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    (tmp_path / "transformed.json").write_text(run.stdout)
    transformed = load_template(tmp_path / "transformed.json")
    functions = transformed.resources_of_type("AWS::Lambda::Function")
    roles = transformed.resources_of_type("AWS::IAM::Role")

    assert {f.properties["Role"]["Fn::GetAtt"][0] for f in functions.values()} == set(roles)
    assert not transformed.resources_of_type("AWS::IAM::Policy")
    assert not transformed.resources_of_type("AWS::IAM::ManagedPolicy")
    for name, function in functions.items():
        role = iam.role_of(transformed, name)
        log_group = function.properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert "ManagedPolicyArns" not in role, name
        assert iam.wildcards_beyond_the_exceptions(role, log_group) == [], name


def python312() -> str | None:
    """The real 3.12 binary: pyenv's shims stand on PATH for every version but run only the selected one."""
    real = sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12"))
    return real[0] if real else shutil.which("python3.12")


@needs_tools
@pytest.mark.skipif(python312() is None, reason="sam build needs python3.12 on PATH (see make build)")
def test_sam_build_lays_out_the_runtime_layer_and_the_handlers(tmp_path: Path) -> None:
    py312 = python312()
    assert py312 is not None
    env = {**os.environ, "PATH": f"{Path(py312).parent}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    build = tmp_path / "build"
    run = subprocess.run(
        [TOOLS / "sam", "build", "--build-dir", build, "--cache-dir", tmp_path / "cache",
         "--template-file", TEMPLATE],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    layer = build / "RuntimeLayer" / "python"
    assert (layer / "aetheris" / "__init__.py").exists() and (layer / "aetheris" / "py.typed").exists()
    assert list(layer.glob("pydantic_core/*aarch64*.so")), (
        "the layer's native wheels match the arm64 functions"
    )
    for function, module in [
        ("WorkerFunction", "worker"),
        ("SignalsFunction", "signals"),
        ("SweeperFunction", "sweeper"),
    ]:
        assert (build / function / module / "app.py").exists()
