"""Plausible truck routes: a loop through real highway waypoints, driven at truck speeds and
interpolated between them, with a little GPS noise."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# (lat, lon) of US interstate junction cities
WAYPOINTS: list[tuple[float, float]] = [
    (41.8781, -87.6298), (41.5868, -93.6250), (41.2565, -95.9345), (39.7392, -104.9903),
    (40.7608, -111.8910), (39.5296, -119.8138), (38.5816, -121.4944), (34.0522, -118.2437),
    (33.4484, -112.0740), (35.0844, -106.6504), (35.4676, -97.5164), (32.7767, -96.7970),
    (29.7604, -95.3698), (30.4515, -91.1871), (33.7490, -84.3880), (35.2271, -80.8431),
    (36.1627, -86.7816), (38.6270, -90.1994), (39.7684, -86.1581), (39.9612, -82.9988),
    (40.4406, -79.9959), (39.9526, -75.1652), (40.7128, -74.0060), (42.3601, -71.0589),
]
_EARTH_KM = 6371.0


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(math.sqrt(h))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass
class Fix:
    lat: float
    lon: float
    speed_kmh: float
    heading: float
    alt_m: float
    accuracy_m: float


class Route:
    """A device's route: consecutive waypoints from a random start, driven at a cruising speed that
    drifts between 55 and 105 km/h."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        start = rng.randrange(len(WAYPOINTS))
        step = rng.choice((1, -1))
        self.legs = [WAYPOINTS[(start + i * step) % len(WAYPOINTS)] for i in range(len(WAYPOINTS) + 1)]
        # small per-device offset so that trucks do not drive exactly on top of each other
        self.offset = (rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05))
        self.leg = 0
        self.along_km = rng.uniform(0, distance_km(self.legs[0], self.legs[1]))
        self.speed = rng.uniform(70, 95)
        self.alt = rng.uniform(100, 1500)

    def advance(self, seconds: float) -> Fix:
        self.speed = min(105.0, max(55.0, self.speed + self.rng.gauss(0, 2.0)))
        self.along_km += self.speed * seconds / 3600.0
        a, b = self.legs[self.leg], self.legs[self.leg + 1]
        length = distance_km(a, b)
        while self.along_km >= length:
            self.along_km -= length
            self.leg = (self.leg + 1) % (len(self.legs) - 1)
            a, b = self.legs[self.leg], self.legs[self.leg + 1]
            length = distance_km(a, b)
        f = self.along_km / length if length else 0.0
        lat = a[0] + (b[0] - a[0]) * f + self.offset[0] + self.rng.gauss(0, 0.00003)
        lon = a[1] + (b[1] - a[1]) * f + self.offset[1] + self.rng.gauss(0, 0.00003)
        self.alt = min(3000.0, max(0.0, self.alt + self.rng.gauss(0, 1.5)))
        return Fix(lat=round(max(-90.0, min(90.0, lat)), 6), lon=round(max(-180.0, min(180.0, lon)), 6),
                   speed_kmh=round(self.speed, 1), heading=round(bearing_deg(a, b), 1),
                   alt_m=round(self.alt, 1), accuracy_m=round(self.rng.uniform(2.0, 8.0), 1))
