"""A small synchronous client for the truckx admin API, plus the CLI's configuration and failure handling.

Every failure ends in :class:`CliError`: one clear line on stderr and an exit code, never a traceback.

Exit codes:
    1  generic failure (server error, conflict, checksum mismatch, command failed)
    2  usage or validation error (bad flag value, ``400 invalid_argument``, ``413``)
    3  authentication / permission (``401`` with a hint to log in, ``403``)
    4  not found (``404``)
    5  server unreachable (connection refused, timeout, ``503``)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from urllib.parse import quote
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
DEFAULT_PROFILE = "default"


class CliError(Exception):
    """A failure to report as one line on stderr, ending the command with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        #: the server's error object (``{"code", "message", ...}``) when the failure is an HTTP error
        self.detail = detail


# -- configuration: saved profiles -------------------------------------------------------------


def config_dir() -> Path:
    """Where the tokens live: ``$TRUCKX_CONFIG_DIR``, else the platform's per-user config dir."""
    override = os.environ.get("TRUCKX_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(typer.get_app_dir("truckx"))


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PROFILE_FIELDS = ("url", "token", "username", "role", "expires_at")


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.fullmatch(name):
        raise CliError(f"profile name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with "
                       "a letter or digit)", EXIT_USAGE)
    return name


@dataclass
class Config:
    """The saved logins, one profile per server (or per user of a server), in ``credentials.json`` (mode
    0600, in a 0700 directory)::

        {"version": 2, "default": "prod", "profiles": {"prod": {"url", "token", "username", "role", "expires_at"}}}

    A file written by an older truckx (one login: ``{"url", "token", ...}``) is read as the profile
    ``default`` and rewritten in this form."""

    default: str | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    migrated: bool = False

    @classmethod
    def load(cls) -> "Config":
        path = credentials_path()
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {path}: {exc}; remove it and log in again") from None
        if not isinstance(data, dict):
            raise CliError(f"{path} is not a truckx credentials file; remove it and log in again")
        if "profiles" not in data:  # the single-server file of truckx 0.1
            entry = {k: data[k] for k in PROFILE_FIELDS if data.get(k) is not None}
            config = cls(DEFAULT_PROFILE if entry else None, {DEFAULT_PROFILE: entry} if entry else {}, migrated=True)
            with contextlib.suppress(OSError):  # a read-only config dir: keep working from memory
                config.save()
            return config
        profiles = data.get("profiles")
        if not isinstance(profiles, dict):
            raise CliError(f"{path}: 'profiles' is not an object; remove the file and log in again")
        clean = {str(k): v for k, v in profiles.items() if isinstance(v, dict)}
        default = data.get("default") if isinstance(data.get("default"), str) else None
        return cls(default, clean)

    def save(self) -> Path:
        """Write the file atomically, readable by the user only (mode 0600 from creation); no profiles left
        removes it."""
        path = credentials_path()
        if not self.profiles:
            path.unlink(missing_ok=True)
            return path
        directory = path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=directory)  # mkstemp creates with 0600
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 2, "default": self.default, "profiles": self.profiles}, fh, indent=2)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def active(self, wanted: str | None) -> str:
        """The profile a command uses: ``wanted`` (``--profile`` / ``TRUCKX_PROFILE``), else the default,
        else the only one saved, else ``default``."""
        if wanted:
            return check_profile_name(wanted)
        if self.default and self.default in self.profiles:
            return self.default
        if len(self.profiles) == 1:
            return next(iter(self.profiles))
        return DEFAULT_PROFILE

    def remove(self, name: str) -> bool:
        if self.profiles.pop(name, None) is None:
            return False
        if self.default == name:
            self.default = sorted(self.profiles)[0] if self.profiles else None
        return True


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
    """What this invocation runs with: ``--url``/``TRUCKX_URL`` and ``--token``/``TRUCKX_TOKEN`` win over the
    saved profile (``--profile``/``TRUCKX_PROFILE``, else the default one); ``--tz`` and ``--relative`` say
    how tables show times."""

    url: str | None = None
    token: str | None = None
    timeout: float = 30.0
    profile: str | None = None
    tz: str | None = None
    relative: bool = False
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            self._config = Config.load()
        return self._config

    def profile_name(self) -> str:
        return self.config().active(self.profile)

    def saved(self) -> dict[str, Any]:
        """The active profile's saved login; an explicitly named profile that does not exist is an error."""
        config = self.config()
        name = self.profile_name()
        entry = config.profiles.get(name)
        if entry is None and self.profile:
            known = ", ".join(sorted(config.profiles)) or "none"
            raise CliError(f"no saved profile {name!r} (saved: {known}); run `truckx login --profile {name} URL`",
                           EXIT_AUTH)
        return entry or {}

    def resolved_url(self) -> str:
        return normalise_url(self.url or self.saved().get("url") or DEFAULT_URL)

    def resolved_token(self) -> str | None:
        return self.token or self.saved().get("token")


def normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise CliError(f"server URL must start with http:// or https://, not {url!r}", EXIT_USAGE)
    return url


# -- HTTP --------------------------------------------------------------------------------------


def error_object(response: httpx.Response) -> dict[str, Any]:
    """The contract's error object ``{"code", "message", ...}``, or something sensible without one."""
    try:
        body = json.loads(response.content)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return {**err, "code": str(err.get("code") or "error"),
                    "message": str(err.get("message") or response.reason_phrase)}
    except ValueError:
        pass
    return {"code": f"http_{response.status_code}",
            "message": response.reason_phrase or f"HTTP {response.status_code}"}


def raise_for_status(response: httpx.Response, what: str = "") -> None:
    status = response.status_code
    if status < 400:
        return
    if not response.is_stream_consumed:
        response.read()
    err = error_object(response)
    code, message = err["code"], err["message"]
    prefix = f"{what}: " if what else ""
    if status == 401:
        raise CliError(f"{prefix}not authenticated ({message}); run `truckx login` "
                       "(or set TRUCKX_TOKEN)", EXIT_AUTH, err)
    if status == 403:
        raise CliError(f"{prefix}forbidden: {message}", EXIT_AUTH, err)
    if status == 404:
        raise CliError(f"{prefix}not found: {message}", EXIT_NOT_FOUND, err)
    if status in (400, 413, 416, 422):
        raise CliError(f"{prefix}{code}: {message}", EXIT_USAGE, err)
    if status in (502, 503, 504):
        raise CliError(f"{prefix}server unavailable ({status} {code}): {message}", EXIT_UNREACHABLE, err)
    raise CliError(f"{prefix}{code} ({status}): {message}", EXIT_ERROR, err)


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
    if settings is None:  # a command run without the root callback (not through ``truckx``)
        settings = Settings(url=os.environ.get("TRUCKX_URL") or None, token=os.environ.get("TRUCKX_TOKEN") or None,
                            profile=os.environ.get("TRUCKX_PROFILE") or None, tz=os.environ.get("TRUCKX_TZ") or None)
        ctx.obj = settings
    return settings


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


# -- IMEIs -------------------------------------------------------------------------------------

#: --imei values one command accepts (each is checked with the server)
MAX_IMEIS = 100


def luhn_check_digit(payload: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def imei_problem(value: str) -> str | None:
    """What is wrong with an IMEI (None when it is valid): 15 digits, the last the Luhn digit of the rest."""
    if not value:
        return "no IMEI"
    if not (len(value) == 15 and value.isascii() and value.isdigit()):
        return f"IMEI {value!r} is not 15 digits"
    expected = luhn_check_digit(value[:14])
    if int(value[14]) != expected:
        return f"IMEI {value} has a wrong check digit (the Luhn digit of its first 14 is {expected})"
    return None


def check_imei(value: str, option: str = "IMEI") -> str:
    value = value.strip()
    problem = imei_problem(value)
    if problem:
        raise CliError(f"{option}: {problem}", EXIT_USAGE)
    return value


def registered(client: Client, imeis: list[str] | None, option: str = "--imei") -> dict[str, dict[str, Any]]:
    """Check that every IMEI given is valid and registered (so a typo is an error, exit 2 or 4, rather than
    an empty answer); returns the devices by IMEI."""
    wanted = list(dict.fromkeys(check_imei(i, option) for v in imeis or [] for i in v.split(",") if i.strip()))
    if len(wanted) > MAX_IMEIS:
        raise CliError(f"{option}: at most {MAX_IMEIS} devices at once", EXIT_USAGE)
    found: dict[str, dict[str, Any]] = {}
    for imei in wanted:
        try:
            found[imei] = client.get(f"/api/v1/admin/devices/{seg(imei)}")
        except CliError as exc:
            if exc.code == EXIT_NOT_FOUND:
                raise CliError(f"{option}: device {imei} is not registered", EXIT_NOT_FOUND) from None
            raise
    return found
