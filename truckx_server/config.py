"""Settings: read and validated once at start-up from flags and ``TRUCKX_*`` environment variables.

Precedence: command-line flag, then environment variable, then default. Secrets are wrapped in
:class:`Secret` so that they never show up in a ``repr`` or a log line.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import secrets
import socket
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


def parse_networks(raw: str | Sequence[Any]) -> tuple[Network, ...]:
    """A comma-separated list of CIDR networks (``10.0.0.0/8, ::1``; a bare address is a /32 or /128)."""
    items = [p.strip() for p in raw.split(",")] if isinstance(raw, str) else [str(p).strip() for p in raw]
    out = []
    for item in items:
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not a CIDR network: {item!r}") from None
    return tuple(out)


def parse_bool(raw: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


DEFAULT_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
#: an absolute tile URL template: http(s), a host (optionally a leading ``{s}.`` subdomain), a port, a path
_TILE_URL = re.compile(r"(?P<origin>https?://(?:\{s\}\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?)"
                       r"(?P<path>/[^\s'\";,\\]*)", re.IGNORECASE)
_TILE_PATH = re.compile(r"/(?!/)[^\s'\";,\\]*")


def tile_source(template: str) -> str | None:
    """The Content-Security-Policy source of a tile URL template (its origin, ``{s}.`` as ``*.``), or
    None for a same-origin path. :class:`ConfigError` for anything else: the template goes into the page
    and the policy, so only a plain http(s) URL or absolute path with ``{z}``, ``{x}`` and ``{y}`` is taken."""
    if not all(p in template for p in ("{z}", "{x}", "{y}")):
        raise ConfigError("tile_url must contain {z}, {x} and {y}")
    if _TILE_PATH.fullmatch(template):
        return None
    m = _TILE_URL.fullmatch(template)
    if m is None:
        raise ConfigError("tile_url must be an http(s) URL template such as " + DEFAULT_TILE_URL
                          + " ({s}. allowed at the start of the host only), or a path on this server")
    return m.group("origin").replace("{s}", "*")


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8888
    data_dir: Path = Path("truckx-data")
    #: relational store (devices, users, alarms, video index, commands)
    sql_url: str = ""
    #: location time series
    locations_url: str = ""
    #: root of the video object tree
    video_dir: Path | None = None
    jwt_secret: Secret | None = None
    device_hash_key: Secret | None = None
    device_token_ttl_s: int = 24 * 3600
    admin_token_ttl_s: int = 12 * 3600
    max_video_bytes: int = 2 * 1024**3
    max_ws_message_bytes: int = 1024 * 1024
    max_json_body_bytes: int = 1024 * 1024
    #: group commit: flush after this many points or this many milliseconds, whichever first
    batch_max_points: int = 2000
    batch_interval_ms: int = 10
    #: backpressure: sockets stop being read while this many points wait to be written
    batch_queue_points: int = 50_000
    command_ttl_s: int = 3600
    ws_ping_interval_s: float = 30.0
    sql_pool_size: int = 10
    store_timeout_s: float = 10.0
    log_level: str = "info"
    #: the first start's admin password; random when not given
    initial_admin_password: Secret | None = None
    login_rate_per_min: int = 10
    #: device logins per minute per IMEI and address (see ratelimit.LoginGuard)
    device_login_rate_per_min: int = 10
    #: proxies whose X-Forwarded-For is believed (empty: the header is ignored)
    trusted_proxies: tuple[Network, ...] = ()
    #: admin event feeds one user may hold open on one process; a newer one closes the oldest (4409)
    max_feeds_per_user: int = 8
    #: retention: points, videos (unless evidence) and cleared alarms older than this many days are
    #: deleted by background passes; 0 keeps them forever
    retain_locations_days: int = 0
    retain_videos_days: int = 0
    retain_alarms_days: int = 0
    #: seconds between retention passes (the first runs 10 s after start)
    retention_interval_s: int = 3600
    #: trips and stops: a stop is at least this long below 5 km/h, or a gap in reports this long
    stop_min_s: int = 300
    migrate_on_start: bool = True
    #: open connections at most; 0: derived from the file-descriptor limit (RLIMIT_NOFILE) with headroom
    max_connections: int = 0
    #: a connection must send a complete request head within this long (after connecting, or after its
    #: previous response on a kept-alive connection); covers WebSocket handshakes, which authenticate
    header_timeout_s: float = 15.0
    #: a request body that sends nothing for this long is cut off (an upload's part is kept for resume)
    body_idle_timeout_s: float = 60.0
    #: bytes a device WebSocket may have queued for writing; a device that does not read is closed (4429)
    ws_write_buffer_bytes: int = 256 * 1024
    #: the console map's tile URL template; its origin joins the page's img-src
    tile_url: str = DEFAULT_TILE_URL
    #: videos read for metadata and a thumbnail at once, each in its own child process (0: none)
    media_workers: int = 1
    #: wall-clock limit for reading one video's metadata and thumbnail, in seconds
    media_timeout_s: float = 20.0
    #: the cluster bus (``redis://host:port/db``); empty: one process, the in-process bus
    bus_url: str = ""
    #: prefix of every Redis key and channel, so that several deployments (or tests) share one Redis
    bus_prefix: str = "truckx"
    #: this process's name in the cluster; empty: host name, port and pid
    node_id: str = ""
    #: server processes forked on this host, sharing the listening port
    workers: int = 1
    #: where videos live: file:///path or s3://bucket/prefix; empty: video_dir (default <data-dir>/videos)
    video_url: str = ""
    #: S3 multipart part size (every part but the last; the same on every resume of an upload)
    s3_part_size: int = 8 * 1024**2
    #: an unfinished S3 upload untouched this long is aborted (its parts deleted)
    upload_abandon_after_s: int = 7 * 86400
    #: webhooks: refuse endpoint URLs whose host is or resolves to a loopback, private, link-local,
    #: unique-local or unspecified address (checked on create/PATCH and again at each delivery)
    webhook_deny_private: bool = True
    #: first retry delay of a failed delivery in seconds; doubled each attempt (with jitter), capped at 1 h
    webhook_retry_base_s: float = 5.0
    #: a delivery is retried for this long (seconds from its creation or its manual retry), then failed
    webhook_retry_window_s: int = 86400
    #: time limit of one delivery attempt, seconds
    webhook_timeout_s: float = 10.0
    #: deliveries in flight at once on this process
    webhook_concurrency: int = 16
    #: device.offline once a device that had a socket has had none for this many seconds
    offline_after_s: int = 300

    def __post_init__(self) -> None:
        if not isinstance(self.trusted_proxies, tuple) or not all(
                isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in self.trusted_proxies):
            try:
                networks = parse_networks(self.trusted_proxies)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ConfigError(f"trusted_proxies: {exc}") from None
            object.__setattr__(self, "trusted_proxies", networks)

    @property
    def resolved_sql_url(self) -> str:
        return self.sql_url or f"sqlite:///{(self.data_dir / 'truckx.db').as_posix()}"

    @property
    def resolved_locations_url(self) -> str:
        return self.locations_url or f"sqlite:///{(self.data_dir / 'locations.db').as_posix()}"

    @property
    def resolved_video_dir(self) -> Path:
        return self.video_dir or (self.data_dir / "videos")

    @property
    def resolved_video_url(self) -> str:
        """``file:///abs/path`` or ``s3://bucket/prefix``."""
        return self.video_url or Path(os.path.abspath(self.resolved_video_dir)).as_uri()

    @property
    def resolved_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}:{self.port}:{os.getpid()}"

    def validate(self) -> "Settings":
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        for name in ("batch_max_points", "batch_interval_ms", "batch_queue_points", "max_video_bytes",
                     "max_ws_message_bytes", "device_token_ttl_s", "admin_token_ttl_s", "command_ttl_s",
                     "sql_pool_size", "login_rate_per_min", "device_login_rate_per_min", "max_feeds_per_user",
                     "ws_write_buffer_bytes", "header_timeout_s", "body_idle_timeout_s", "retention_interval_s",
                     "stop_min_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be 0 (from the file-descriptor limit) or positive")
        for name in ("retain_locations_days", "retain_videos_days", "retain_alarms_days"):
            if not 0 <= getattr(self, name) <= 100_000:
                raise ConfigError(f"{name} must be 0 (keep forever) or a number of days up to 100000")
        if self.batch_queue_points < self.batch_max_points:
            raise ConfigError("batch_queue_points must be at least batch_max_points")
        for url_name in ("sql_url", "locations_url"):
            url = getattr(self, url_name)
            if url and url.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "mysql", "mariadb", "mongodb"):
                raise ConfigError(f"{url_name}: unsupported scheme in {url.split(':', 1)[0]!r}")
        tile_source(self.tile_url)
        if not 0 <= self.media_workers <= 64:
            raise ConfigError("media_workers must be 0-64")
        if not 0 < self.media_timeout_s <= 3600:
            raise ConfigError("media_timeout_s must be more than 0 and at most 3600")
        self._validate_cluster()
        self._validate_webhooks()
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        return self

    def _validate_webhooks(self) -> None:
        if not 0 < self.webhook_retry_base_s <= 3600:
            raise ConfigError("webhook_retry_base_s must be more than 0 and at most 3600")
        if not 0 <= self.webhook_retry_window_s <= 30 * 86400:
            raise ConfigError("webhook_retry_window_s must be 0-2592000 (30 days)")
        if not 0 < self.webhook_timeout_s <= 300:
            raise ConfigError("webhook_timeout_s must be more than 0 and at most 300")
        if not 1 <= self.webhook_concurrency <= 1000:
            raise ConfigError("webhook_concurrency must be 1-1000")
        if not 1 <= self.offline_after_s <= 30 * 86400:
            raise ConfigError("offline_after_s must be 1-2592000 (30 days)")

    def _validate_cluster(self) -> None:
        if self.bus_url and self.bus_url.split(":", 1)[0] not in ("redis", "rediss", "unix"):
            raise ConfigError("bus_url: use redis://host:port/db, rediss://... or unix:///path")
        if not BUS_PREFIX_RE.fullmatch(self.bus_prefix):
            raise ConfigError("bus_prefix: 1-64 letters, digits and _ . : -")
        if self.node_id and not NODE_ID_RE.fullmatch(self.node_id):
            raise ConfigError("node_id: 1-128 letters, digits and _ . : -")
        if not 1 <= self.workers <= 64:
            raise ConfigError("workers must be 1-64")
        if self.video_url and self.video_dir:
            raise ConfigError("give video_url or video_dir, not both")
        if self.video_url:
            video_location(self.video_url)
        if not 5 * 1024**2 <= self.s3_part_size <= 5 * 1024**3:
            raise ConfigError("s3_part_size must be 5 MiB to 5 GiB (S3's limits for a part)")
        if self.upload_abandon_after_s <= 0:
            raise ConfigError("upload_abandon_after_s must be positive")
        if self.workers > 1:
            if not self.bus_url:
                raise ConfigError("--workers above 1 needs --bus-url: the worker processes share devices, "
                                  "commands and events through it")
            if self.resolved_locations_url.startswith("sqlite:"):
                raise ConfigError("--workers above 1 needs --locations-url mongodb://...: the SQLite "
                                  "location store has one writer per file, which the workers would take turns on")


BUS_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
NODE_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def video_location(url: str) -> tuple[str, str, str]:
    """``("file", path, "")`` or ``("s3", bucket, prefix)`` from a video URL; :class:`ConfigError` if it
    is neither."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ConfigError("video_url: a file URL needs an absolute path, file:///path")
        return "file", urllib.parse.unquote(parsed.path), ""
    if parsed.scheme == "s3":
        bucket, prefix = parsed.netloc, parsed.path.strip("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigError("video_url: s3://bucket/prefix needs a valid bucket name")
        if parsed.query or parsed.fragment or not re.fullmatch(r"[A-Za-z0-9_./-]{0,512}", prefix) or ".." in prefix:
            raise ConfigError("video_url: the S3 prefix may hold letters, digits and _ . / - only")
        return "s3", bucket, prefix
    raise ConfigError("video_url: use file:///path or s3://bucket/prefix")


# name -> (type or converter, help). Every field is settable by flag --name-with-dashes and env TRUCKX_NAME.
_OPTIONS: dict[str, tuple[type | Callable[[str], Any], str]] = {
    "host": (str, "address to listen on"),
    "port": (int, "port to listen on"),
    "data_dir": (Path, "data directory (SQLite files, videos, generated secrets)"),
    "sql_url": (str, "relational store URL: sqlite:///path or mysql://user:pass@host/db"),
    "locations_url": (str, "location store URL: sqlite:///path or mongodb://host/db"),
    "video_dir": (Path, "video storage root (default <data-dir>/videos)"),
    "jwt_secret": (Secret, "HS256 signing secret (default: generated into <data-dir>/jwt-secret)"),
    "device_hash_key": (Secret, "key for hashing device secrets (default: generated into <data-dir>/device-hash-key)"),
    "device_token_ttl_s": (int, "device token lifetime in seconds"),
    "admin_token_ttl_s": (int, "admin token lifetime in seconds"),
    "max_video_bytes": (int, "largest accepted video in bytes"),
    "max_ws_message_bytes": (int, "largest WebSocket message in bytes (larger closes with 1009)"),
    "batch_max_points": (int, "group commit: points per flush"),
    "batch_interval_ms": (int, "group commit: longest wait before a flush, ms"),
    "batch_queue_points": (int, "points buffered before sockets stop being read"),
    "command_ttl_s": (int, "default command time-to-live in seconds"),
    "sql_pool_size": (int, "relational connection pool size"),
    "store_timeout_s": (float, "timeout of one store call in seconds"),
    "log_level": (str, "debug, info, warning or error"),
    "initial_admin_password": (Secret, "password of the first admin user (default: random, printed once)"),
    "login_rate_per_min": (int, "admin login attempts per minute per username and address (failures per "
                                "address: 5x; a slower per-username brake)"),
    "device_login_rate_per_min": (int, "device login attempts per minute per IMEI and address (failures per "
                                       "address: 5x; a slower per-IMEI brake)"),
    "trusted_proxies": (parse_networks, "comma-separated CIDR networks of reverse proxies whose "
                                        "X-Forwarded-For is believed (default: none, the header is ignored)"),
    "max_feeds_per_user": (int, "admin event feeds one user may hold open per process (a newer one "
                                "closes the oldest with 4409)"),
    "max_connections": (int, "open connections at most (0: from the file-descriptor limit, with headroom)"),
    "header_timeout_s": (float, "seconds a connection has to send a request head (also the keep-alive idle time)"),
    "body_idle_timeout_s": (float, "seconds a request body may send nothing before it is cut off"),
    "ws_write_buffer_bytes": (int, "bytes a device WebSocket may have queued for writing (more closes it, 4429)"),
    "tile_url": (str, "map tile URL template of the console ({z}/{x}/{y}, optional {s}); default OpenStreetMap's"),
    "media_workers": (int, "videos read at once for metadata and thumbnails, one child process each (0: off)"),
    "media_timeout_s": (float, "time limit of reading one video's metadata and thumbnail, seconds"),
    "retain_locations_days": (int, "delete location points older than this many days (0: keep forever)"),
    "retain_videos_days": (int, "delete videos uploaded more than this many days ago, unless attached to an "
                                "alarm that is not cleared (0: keep forever)"),
    "retain_alarms_days": (int, "delete cleared alarms whose ts is older than this many days (0: keep forever)"),
    "retention_interval_s": (int, "seconds between retention passes (the first runs 10 s after start)"),
    "stop_min_s": (int, "trips and stops: a stop lasts at least this many seconds below 5 km/h, or is a gap "
                        "in reports this long"),
    "bus_url": (str, "cluster bus, redis://host:port/db (empty: one process, nothing shared)"),
    "bus_prefix": (str, "prefix of the Redis keys and channels of this deployment"),
    "node_id": (str, "name of this process in the cluster (default: host name, port and pid)"),
    "workers": (int, "server processes on this host sharing the port (above 1 needs --bus-url)"),
    "video_url": (str, "video store: file:///path or s3://bucket/prefix (default <data-dir>/videos)"),
    "s3_part_size": (int, "S3 multipart part size in bytes (at least 5 MiB)"),
    "upload_abandon_after_s": (int, "unfinished S3 uploads untouched this long are aborted"),
    "webhook_deny_private": (parse_bool, "refuse webhook URLs whose host is or resolves to a loopback, private, "
                                         "link-local, unique-local or unspecified address, on create, PATCH and "
                                         "each delivery (true or false; default true)"),
    "webhook_retry_base_s": (float, "first retry delay of a failed webhook delivery, seconds (doubled each "
                                    "attempt with jitter, at most one hour)"),
    "webhook_retry_window_s": (int, "a webhook delivery is retried for this many seconds, then failed"),
    "webhook_timeout_s": (float, "time limit of one webhook delivery attempt, seconds"),
    "webhook_concurrency": (int, "webhook deliveries in flight at once per process"),
    "offline_after_s": (int, "device.offline once a device that had a socket has had none for this many seconds"),
}


def _convert(kind: type | Callable[[str], Any], raw: str, name: str) -> Any:
    try:
        if kind is Secret:
            return Secret(raw)
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError as exc:
        if kind is parse_bool:
            raise ConfigError(f"{name}: use true or false, not {raw!r}") from exc
        if kind is parse_networks:
            raise ConfigError(f"{name}: {exc}") from exc
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(kind, '__name__', 'a value')}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, (_kind, help_text) in _OPTIONS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                            help=f"{help_text} [env TRUCKX_{name.upper()}]")


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
         **overrides: Any) -> Settings:
    """Build settings from flags, then env, then defaults; ``overrides`` win over all (tests)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (kind, _help) in _OPTIONS.items():
        raw = getattr(args, name, None) if args is not None else None
        if raw is None:
            raw = environ.get("TRUCKX_" + name.upper())
        if raw is not None and raw != "":
            values[name] = _convert(kind, raw, name)
    values.update(overrides)
    return Settings(**values).validate()


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="truckx-server", description="truckx fleet dashcam server")
    sub = parser.add_subparsers(dest="command")
    for cmd, help_text in (("serve", "run the server (default)"), ("migrate", "apply database migrations and exit")):
        add_arguments(sub.add_parser(cmd, help=help_text))
    add_arguments(parser)
    ns = parser.parse_args(argv)
    return ns.command or "serve", ns
