"""Device credentials: register devices through the admin API and cache their secrets per server URL
(mode 0600), so repeated runs reuse the same devices."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import httpx

from truckx_server.models import make_imei

from .clips import default_cache_dir
from .config import SimConfig


class ProvisionError(RuntimeError):
    pass


def cache_path(config: SimConfig) -> Path:
    if config.secrets_file:
        return Path(config.secrets_file)
    base = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", config.http_url.split("://", 1)[-1])
    return base / f"devices-{key}.json"


def load_cache(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise ProvisionError(f"{path}: not valid JSON ({exc})") from None
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list):
        raise ProvisionError(f"{path}: expected {{\"devices\": [{{\"imei\", \"secret\"}}, ...]}}")
    return [{"imei": d["imei"], "secret": d["secret"]} for d in devices]


def save_cache(path: Path, url: str, devices: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "devices": devices}, f)
    os.replace(tmp, path)


async def _admin_token(http: httpx.AsyncClient, config: SimConfig) -> str:
    if not config.admin_password:
        raise ProvisionError("--provision needs the admin password: --admin-password-file or TRUCKX_ADMIN_PASSWORD")
    r = await http.post("/api/v1/admin/login", json={"username": config.admin_user, "password": config.admin_password})
    if r.status_code != 200:
        raise ProvisionError(f"admin login failed: HTTP {r.status_code} {r.text[:200]}")
    return r.json()["token"]


async def _still_valid(http: httpx.AsyncClient, device: dict[str, str]) -> bool:
    r = await http.post("/api/v1/device/login", json=device)
    return r.status_code == 200


async def credentials(config: SimConfig) -> list[dict[str, str]]:
    """``config.devices`` credentials: from the cache, registering the missing ones with --provision."""
    path = cache_path(config)
    cached = load_cache(path)
    async with httpx.AsyncClient(base_url=config.http_url, timeout=60) as http:
        if cached and config.provision and not await _still_valid(http, cached[0]):
            cached = []  # the server was reset: its devices are gone
        if len(cached) >= config.devices:
            return cached[:config.devices]
        if not config.provision:
            raise ProvisionError(f"{path} holds {len(cached)} devices, {config.devices} needed; "
                                 "run with --provision to register them")
        token = await _admin_token(http, config)
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random()
        have = {d["imei"] for d in cached}
        while len(cached) < config.devices:
            want = min(1000, config.devices - len(cached))
            base = rng.randrange(10 ** 11)
            prefix = config.imei_prefix[:2].rjust(2, "8")
            batch = []
            for i in range(want):
                imei = make_imei(f"{prefix}{(base + i) % 10 ** 12:012d}")
                if imei not in have:
                    batch.append({"imei": imei, "name": f"sim-{imei[-6:]}"})
            r = await http.post("/api/v1/admin/devices", json={"devices": batch}, headers=headers)
            if r.status_code == 409:
                continue  # some of these IMEIs are taken: try another block
            if r.status_code != 201:
                raise ProvisionError(f"registering devices failed: HTTP {r.status_code} {r.text[:200]}")
            created: list[dict[str, Any]] = r.json()["devices"]
            for d in created:
                cached.append({"imei": d["imei"], "secret": d["secret"]})
                have.add(d["imei"])
            save_cache(path, config.http_url, cached)
        return cached[:config.devices]
