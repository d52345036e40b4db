"""HTTP API routes ``GET /ui`` and ``GET /ui/{asset}``: the operator UI, static files shipped inside
the package (``aetheris/ui/``), served by the API function itself.

No build step and nothing from a CDN: the page works offline and wherever the API is (the local
bridge, API Gateway under a stage prefix, a custom domain with a base path) because every URL in
it is relative — the page is always ``.../ui``, so its assets are ``ui/app.js`` and the API routes
it calls are ``jobs``, ``jobs/{id}/trace``, ``observability/summary``. The files hold no data; the
data routes keep their own authorization, and where they answer 401 the page asks for a bearer
token and keeps it in the tab only (``sessionStorage``).

Only the files in the folder are served (a fixed list read once), with a strict Content Security
Policy: scripts, styles and requests from this origin only, no inline script.
"""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from aetheris.handlers.api_models import ErrorResponse

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Deploys replace the files: always revalidate (they are small).
    "Cache-Control": "no-cache",
}
_TEXT: Any = {"schema": {"type": "string"}}

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


@cache
def assets() -> dict[str, tuple[str, bytes]]:
    """File name → (content type, bytes) of every servable file in ``aetheris/ui/``."""
    folder = resources.files("aetheris").joinpath("ui")
    found: dict[str, tuple[str, bytes]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            found[entry.name] = (_TYPES[suffix], entry.read_bytes())
    return found


def _serve(name: str) -> Response[str]:
    asset = assets().get(name)
    if asset is None:
        raise NotFoundError(f"the UI has no file {name!r}")  # answered 404 not_found by the API
    content_type, body = asset
    return Response(
        status_code=HTTPStatus.OK, content_type=content_type, body=body.decode(), headers=dict(_HEADERS)
    )


@router.get(
    "/ui",
    include_in_schema=False,  # static files for browsers, not part of the API a client codes against
    summary="The operator UI: jobs, a job's timeline and trace, signals, stuck jobs, the summary",
    responses={200: {"description": "The page (HTML)", "content": {"text/html": _TEXT}}},
)
def ui() -> Response[str]:
    return _serve("index.html")


@router.get(
    "/ui/<asset>",
    include_in_schema=False,
    summary="A file of the operator UI (script, style sheet)",
    responses={
        200: {"description": "The file", "content": {"text/javascript": _TEXT, "text/css": _TEXT}},
        400: {"description": "Not a file name", "content": {"application/json": {"model": ErrorResponse}}},
        404: {"description": "No such file", "content": {"application/json": {"model": ErrorResponse}}},
    },
)
def ui_asset(
    asset: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
) -> Response[str]:
    return _serve(asset)
