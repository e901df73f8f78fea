"""Device names beside IMEIs: each IMEI is looked up once and kept in a map with a bound."""

from __future__ import annotations

import collections
import re
import time
from typing import Any

from .client import EXIT_NOT_FOUND, Client, CliError, seg

_IMEI = re.compile(r"\d{15}")


class DeviceNames:
    """IMEI -> name (None for a device without a name, or not registered). Filled from the device list at
    start (up to the bound), then one ``GET /devices/{imei}`` per IMEI not seen before, at most
    ``lookups_per_s`` a second; the least recently used entries go when the map is full."""

    def __init__(self, client: Client, max_entries: int = 10_000, lookups_per_s: float = 20.0,
                 lookup_timeout_s: float = 5.0) -> None:
        self.client = client
        self.max_entries = max_entries
        self.lookups_per_s = lookups_per_s
        self.lookup_timeout_s = lookup_timeout_s
        self._names: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._budget = lookups_per_s
        self._refilled = time.monotonic()
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._names)

    def _put(self, imei: str, name: str | None) -> None:
        self._names[imei] = name
        self._names.move_to_end(imei)
        while len(self._names) > self.max_entries:
            self._names.popitem(last=False)

    def remember(self, devices: Any) -> None:
        for device in devices:
            if isinstance(device, dict) and isinstance(device.get("imei"), str) and _IMEI.fullmatch(device["imei"]):
                name = device.get("name")
                self._put(device["imei"], name if isinstance(name, str) else None)

    def prefetch(self) -> None:
        """Read the device list, up to the bound."""
        for page, _next in self.client.pages("/api/v1/admin/devices", [], limit=1000, cursor=None, follow=True):
            self.remember(page)
            if len(self._names) >= self.max_entries:
                return

    def _may_look_up(self) -> bool:
        now = time.monotonic()
        self._budget = min(self.lookups_per_s, self._budget + (now - self._refilled) * self.lookups_per_s)
        self._refilled = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    def get(self, imei: Any) -> str | None:
        if not isinstance(imei, str) or not _IMEI.fullmatch(imei):
            return None
        if imei in self._names:
            self._names.move_to_end(imei)
            return self._names[imei]
        if not self._may_look_up():
            return None  # asked again with the next event of this device
        self.lookups += 1
        try:
            device = self.client.get(f"/api/v1/admin/devices/{seg(imei)}", timeout=self.lookup_timeout_s)
        except CliError as exc:
            if exc.code == EXIT_NOT_FOUND:  # not registered (any more): remember that too
                self._put(imei, None)
            return None  # unreachable, or another failure: try again later
        name = device.get("name") if isinstance(device, dict) else None
        self._put(imei, name if isinstance(name, str) else None)
        return self._names[imei]
