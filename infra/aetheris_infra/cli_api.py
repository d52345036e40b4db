"""The CLI's client of the HTTP API, and the errors that map to its exit statuses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_API_ERROR = 0, 1, 2, 3, 4
# `--wait` gave up on a job that is not finished: parked on a signal, or past --timeout.
EXIT_RUNNING: Final = 5
PAGE: Final = 100


class CliError(Exception):
    exit_code = EXIT_USAGE


class UsageError(CliError):
    exit_code = EXIT_USAGE


class Unreachable(CliError):
    exit_code = EXIT_UNREACHABLE

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(
            f"cannot reach the Aetheris API at {url} ({reason}). Start a local stack with `aetheris dev`, "
            "or point --api (or AETHERIS_API) at a deployed stack."
        )


class ApiError(CliError):
    exit_code = EXIT_API_ERROR

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"the API answered {status} {code}: {message}")


class MissingInput(CliError):
    """The API's job lacks the ``input`` field a history needs."""

    exit_code = EXIT_API_ERROR


# -- the HTTP API -----------------------------------------------------------------------------


class Api:
    """The HTTP API at ``url``; with a ``token``, every request carries ``Authorization: Bearer`` (the
    local stack's ``$AETHERIS_API_TOKEN``, or a JWT for a stack deployed with ``ApiAuth=JWT``)."""

    def __init__(
        self, url: str, timeout: float = 30.0, *, token: str | None = None, sigv4: bool = False
    ) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        self._token = token or None
        self._sigv4 = sigv4

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        """``(status, JSON body)`` of a 2xx answer; ``ApiError`` for any other, ``Unreachable`` if none."""
        params = {name: value for name, value in query.items() if value is not None}
        url = self.url + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json"} | ({"content-type": "application/json"} if data else {})
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        elif self._sigv4:
            headers = _signed(method, url, data, headers)
        try:
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            raise _api_error(error.code, error.read()) from None
        except urllib.error.URLError as error:
            raise Unreachable(self.url, error.reason) from None
        except (OSError, ValueError) as error:  # a reset connection; a URL that is not http(s)
            raise Unreachable(self.url, error) from None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            raise ApiError(status, "bad_response", f"not JSON: {raw[:200]!r}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, **query)[1]

    def pages(self, path: str, key: str) -> list[Any]:
        """Every item of a paginated listing, following ``next_cursor``."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(path, limit=PAGE, cursor=cursor)
            items += page[key]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def _signed(method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with a SigV4 signature for execute-api, from the default AWS credential chain."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise UsageError("--sigv4 needs AWS credentials (environment, AWS_PROFILE or the default profile)")
    host = urlsplit(url).hostname or ""
    parts = host.split(".")  # <api-id>.execute-api.<region>.amazonaws.com
    region = parts[2] if len(parts) > 3 and parts[1] == "execute-api" else session.region_name
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region or "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        return ApiError(status, f"http_{status}", raw[:200].decode(errors="replace"))
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ApiError(status, str(error.get("code")), str(error.get("message")))
    message = body.get("message", body) if isinstance(body, dict) else body  # API Gateway's own answers
    return ApiError(status, f"http_{status}", str(message))


def job_path(job_id: str, *rest: str) -> str:
    return "/".join(["/jobs", quote(job_id, safe=""), *(quote(part, safe="") for part in rest)])


# -- output ---------------------------------------------------------------------------------------
