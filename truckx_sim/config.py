"""The simulator's settings: one frozen dataclass, built from the command line or by a test."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class SimConfig:
    url: str = "http://127.0.0.1:8888"
    devices: int = 10
    #: how long the fleet drives (seconds); then it drains its buffers and stops
    duration_s: float = 60.0
    #: devices started per second (0: all at once)
    ramp_per_s: float = 0.0
    #: initial location report interval in seconds (a set_report_interval command changes it)
    report_interval_s: float = 1.0
    #: alarms per device per hour (Poisson)
    alarm_rate_per_h: float = 0.0
    #: what each alarm uploads: "mp4" (a real H.264 clip, see clips.py), "random" (``video_size`` random
    #: bytes) or "none" (alarms name their files but nothing is uploaded)
    video: str = "mp4"
    #: bytes of each "random" video; 0 uploads nothing, whatever ``video`` says (as before clips existed)
    video_size: int = 256 * 1024
    #: the clips: size, frame rate and length
    video_width: int = 480
    video_height: int = 270
    video_fps: int = 15
    video_seconds: float = 4.0
    #: "device" (one clip per device, its IMEI burned in), "pool" (a few clips shared by the fleet) or
    #: "auto" (device for small fleets, else pool)
    video_labels: str = "auto"
    #: where clips (and, unless ``secrets_file`` says otherwise, device credentials) are cached;
    #: default $XDG_CACHE_HOME/truckx-sim or ~/.cache/truckx-sim
    cache_dir: str | None = None
    #: share of uploads interrupted halfway and resumed with HEAD + PATCH
    upload_interrupt_rate: float = 0.2
    #: concurrent uploads per process
    max_concurrent_uploads: int = 8
    workers: int = 1
    #: 127.0.0.x source addresses to spread connections over (0: automatic)
    source_addresses: int = 0
    provision: bool = False
    admin_user: str = "admin"
    admin_password: str | None = None
    #: JSON file with {"devices": [{"imei", "secret"}]}; default: a per-URL cache file
    secrets_file: str | None = None
    #: reconnect backoff: full jitter over base * 2**attempt, capped
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 15.0
    #: how long a device stays down after a reset command
    reset_delay_s: float = 3.0
    #: log in again before every reconnect (as a rebooted device would); otherwise reuse the token
    relogin_on_reconnect: bool = False
    #: after duration: wait at most this long for outstanding points to be acknowledged
    drain_timeout_s: float = 15.0
    #: keep each device's generated timestamps in the summary (tests compare them with the store)
    collect_points: bool = False
    seed: int | None = None
    #: HTTP timeout for REST calls (login, alarms, uploads)
    http_timeout_s: float = 30.0
    #: IMEIs start with this prefix when provisioning (14 digits are completed with a Luhn digit)
    imei_prefix: str = "86"

    @property
    def http_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def ws_url(self) -> str:
        base = self.http_url
        if base.startswith("https://"):
            base = "wss://" + base[len("https://"):]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://"):]
        return base + "/api/v1/device/ws"

    def __post_init__(self) -> None:
        if self.video not in ("mp4", "random", "none"):
            raise ValueError(f"video must be mp4, random or none, not {self.video!r}")
        if self.video_labels not in ("auto", "device", "pool"):
            raise ValueError(f"video_labels must be auto, device or pool, not {self.video_labels!r}")

    def replace(self, **changes: Any) -> "SimConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
