"""A small synchronous client for the truckx admin API, plus the CLI's configuration and failure handling.

Every failure ends in :class:`CliError`: one clear line on stderr and an exit code, never a traceback.

Exit codes:
    1  generic failure (server error, conflict, checksum mismatch, command failed)
    2  usage or validation error (bad flag value, ``400 invalid_argument``, ``413``)
    3  authentication / permission (``401`` with a hint to log in, ``403``)
    4  not found (``404``)
    5  server unreachable (connection refused, timeout, ``503``)
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from urllib.parse import quote
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import typer

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5

DEFAULT_URL = "http://127.0.0.1:8888"
CREDENTIALS_FILE = "credentials.json"


class CliError(Exception):
    """A failure to report as one line on stderr, ending the command with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- configuration -----------------------------------------------------------------------------


def config_dir() -> Path:
    """Where the token lives: ``$TRUCKX_CONFIG_DIR``, else the platform's per-user config dir."""
    override = os.environ.get("TRUCKX_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(typer.get_app_dir("truckx"))


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> dict[str, Any]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}; run `truckx logout` and log in again") from None
    return data if isinstance(data, dict) else {}


def save_credentials(data: dict[str, Any]) -> Path:
    """Write the credentials file atomically, readable by the user only (mode 0600 from creation)."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / CREDENTIALS_FILE
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=directory)  # mkstemp creates with 0600
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def delete_credentials() -> bool:
    path = credentials_path()
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def jwt_claims(token: str) -> dict[str, Any]:
    """The token's payload, read without verifying (the server verifies; this is for display)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return claims if isinstance(claims, dict) else {}
    except (IndexError, ValueError):
        return {}


@dataclass
class Settings:
    """What the root command collected: ``--url``/``TRUCKX_URL`` and ``--token``/``TRUCKX_TOKEN``."""

    url: str | None = None
    token: str | None = None
    timeout: float = 30.0

    def resolved_url(self) -> str:
        return normalise_url(self.url or load_credentials().get("url") or DEFAULT_URL)

    def resolved_token(self) -> str | None:
        return self.token or load_credentials().get("token")


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise CliError(f"server URL must start with http:// or https://, not {url!r}", EXIT_USAGE)
    return url


# -- HTTP --------------------------------------------------------------------------------------


def error_line(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the contract's error body, or something sensible without one."""
    try:
        body = json.loads(response.content)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("code") or "error"), str(err.get("message") or response.reason_phrase)
    except ValueError:
        pass
    return f"http_{response.status_code}", response.reason_phrase or f"HTTP {response.status_code}"


def raise_for_status(response: httpx.Response, what: str = "") -> None:
    status = response.status_code
    if status < 400:
        return
    if not response.is_stream_consumed:
        response.read()
    code, message = error_line(response)
    prefix = f"{what}: " if what else ""
    if status == 401:
        raise CliError(f"{prefix}not authenticated ({message}); run `truckx login` "
                       "(or set TRUCKX_TOKEN)", EXIT_AUTH)
    if status == 403:
        raise CliError(f"{prefix}forbidden: {message}", EXIT_AUTH)
    if status == 404:
        raise CliError(f"{prefix}not found: {message}", EXIT_NOT_FOUND)
    if status in (400, 413, 416, 422):
        raise CliError(f"{prefix}{code}: {message}", EXIT_USAGE)
    if status in (502, 503, 504):
        raise CliError(f"{prefix}server unavailable ({status} {code}): {message}", EXIT_UNREACHABLE)
    raise CliError(f"{prefix}{code} ({status}): {message}", EXIT_ERROR)


class Client:
    """The admin API over one ``httpx.Client``; every method raises :class:`CliError` on failure."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.token = token
        headers = {"User-Agent": "truckx-cli", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: httpx.HTTPError) -> CliError:
        if isinstance(exc, httpx.TimeoutException):
            return CliError(f"server at {self.url} did not answer in time ({type(exc).__name__})", EXIT_UNREACHABLE)
        if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError)):
            return CliError(f"cannot reach the server at {self.url}: {exc or type(exc).__name__}"
                            " (is it running? check --url / TRUCKX_URL)", EXIT_UNREACHABLE)
        return CliError(f"request to {self.url} failed: {exc or type(exc).__name__}", EXIT_ERROR)

    def request(self, method: str, path: str, *, params: Any = None, json_body: Any = None,
                headers: dict[str, str] | None = None, what: str = "", timeout: float | None = None) -> httpx.Response:
        try:
            kwargs: dict[str, Any] = {"params": params, "json": json_body, "headers": headers}
            if timeout is not None:
                kwargs["timeout"] = timeout
            response = self.http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            raise CliError(f"invalid server URL {self.url!r}: {exc}", EXIT_USAGE) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        raise_for_status(response, what)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the server sent something that is not JSON for {method} {path}") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.json("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.json("POST", path, json_body=body if body is not None else {}, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.json("PATCH", path, json_body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.json("DELETE", path, **kwargs)

    def pages(self, path: str, params: list[tuple[str, Any]], *, limit: int | None, cursor: str | None,
              follow: bool) -> Iterator[tuple[list[Any], str | None]]:
        """Yield ``(items, next_cursor)`` per page; with ``follow``, walk every ``next_cursor``."""
        seen_cursors: set[str] = set()
        while True:
            query = [(k, v) for k, v in params if v is not None]
            if limit is not None:
                query.append(("limit", limit))
            if cursor:
                query.append(("cursor", cursor))
            items, next_cursor = split_page(self.get(path, params=query))
            yield items, next_cursor
            if not follow or not next_cursor:
                return
            if next_cursor in seen_cursors:  # a server bug must not make us loop forever
                raise CliError(f"the server returned the same cursor twice for {path}")
            seen_cursors.add(next_cursor)
            cursor = next_cursor

    def stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
               params: Any = None) -> "StreamContext":
        return StreamContext(self, method, path, headers or {}, params)


class StreamContext:
    """``with client.stream(...) as response``: a streamed response, errors already mapped."""

    def __init__(self, client: Client, method: str, path: str, headers: dict[str, str], params: Any) -> None:
        self.client = client
        self._cm = client.http.stream(method, path, headers=headers, params=params)
        self.response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        try:
            self.response = self._cm.__enter__()
        except httpx.HTTPError as exc:
            raise self.client._unreachable(exc) from None
        if self.response.status_code >= 400 and self.response.status_code != 416:
            try:
                raise_for_status(self.response)
            finally:
                self._cm.__exit__(None, None, None)
        return self.response

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._cm.__exit__(exc_type, exc, tb)
        if isinstance(exc, httpx.HTTPError):  # the connection broke while reading the body
            raise self.client._unreachable(exc) from None


def split_page(body: Any) -> tuple[list[Any], str | None]:
    """``{"items": [...], "next_cursor": ...}`` (or a bare list) as ``(items, next_cursor)``."""
    if isinstance(body, list):
        return body, None
    if isinstance(body, dict):
        for key in ("items", "devices", "users", "alarms", "locations", "videos"):
            if isinstance(body.get(key), list):
                return body[key], body.get("next_cursor")
    raise CliError("the server sent an unexpected response (no items list)")


def make_client(settings: Settings, require_token: bool = True) -> Client:
    token = settings.resolved_token()
    if require_token and not token:
        raise CliError("not logged in: run `truckx login URL` (or set TRUCKX_TOKEN)", EXIT_AUTH)
    return Client(settings.resolved_url(), token, settings.timeout)


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_object(Settings)
    return settings if settings is not None else Settings(url=os.environ.get("TRUCKX_URL"),
                                                          token=os.environ.get("TRUCKX_TOKEN"))


def client_of(ctx: typer.Context, require_token: bool = True) -> Client:
    """The client for this invocation, closed when the command ends."""
    client = make_client(settings_of(ctx), require_token)
    ctx.call_on_close(client.close)
    return client


def seg(value: str, what: str = "argument") -> str:
    """One URL path segment from user input, percent-encoded so it can never change the path."""
    if value in ("", ".", ".."):
        raise CliError(f"{what} must not be empty, '.' or '..'", EXIT_USAGE)
    return quote(value, safe="")
