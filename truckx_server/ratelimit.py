"""Rate limiting with bounded memory: token buckets per key, and the login guard built from them.

Every map here is keyed by something a client chose (a username, an IMEI, an address), so every map has
a bound, and the caller caps the length of its keys before they get here (``login_key``, ``address_key``).
"""

from __future__ import annotations

import collections
import ipaddress
import math
import time
import unicodedata

from .errors import RateLimited

#: longest subject (username, IMEI) kept as a key; longer input is refused before it gets here
MAX_SUBJECT_CHARS = 64
DEFAULT_MAX_KEYS = 50_000


def login_key(subject: str) -> str:
    """A login subject as a limiter key: NFKC, case-folded, at most MAX_SUBJECT_CHARS characters (so
    ``Admin``, ``ADMIN`` and full-width ``ａｄｍｉｎ`` share one bucket)."""
    return unicodedata.normalize("NFKC", subject[:MAX_SUBJECT_CHARS]).casefold()[:MAX_SUBJECT_CHARS]


def address_key(address: str) -> str:
    """A client address as a limiter key: an IPv4 address as is (also when IPv4-mapped), an IPv6 address
    as its /64 (one subscriber usually holds a whole /64, so per-address limits would be void per /128)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """A token bucket per key: ``per_period`` tokens, refilled continuously over ``period_s``.

    At most ``max_keys`` keys are held. When a new key would go past that, the least recently used key
    is dropped (O(1)). That is sound: a bucket left alone for a whole period is full again, the same as
    no entry at all, so dropping the oldest loses nothing unless more than ``max_keys`` keys were used
    within one period; and the per-address limits in front of every limiter keep that from one address.
    """

    def __init__(self, per_period: float, period_s: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if per_period <= 0 or period_s <= 0 or max_keys <= 0:
            raise ValueError("per_period, period_s and max_keys must be positive")
        self.capacity = float(per_period)
        self.rate = per_period / period_s
        self.max_keys = max_keys
        #: key -> [tokens, monotonic time of the last update], least recently used first
        self._buckets: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str, now: float) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.capacity, now]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.capacity, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for ``key``; False (and nothing taken) when there is none."""
        bucket = self._bucket(key, time.monotonic() if now is None else now)
        if bucket[0] < 1:
            return False
        bucket[0] -= 1
        return True

    def refund(self, key: str, now: float | None = None) -> None:
        """Give back a token taken by :meth:`allow` (a success that should not count)."""
        if key in self._buckets:
            bucket = self._bucket(key, time.monotonic() if now is None else now)
            bucket[0] = min(self.capacity, bucket[0] + 1)

    def exhausted(self, key: str, now: float | None = None) -> bool:
        """Whether ``key`` has no token left (without taking one, and without adding an entry)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        now = time.monotonic() if now is None else now
        return bucket[0] + max(0.0, now - bucket[1]) * self.rate < 1

    def retry_after(self, key: str, now: float | None = None) -> int:
        """Whole seconds until ``key`` has a token again (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 1
        now = time.monotonic() if now is None else now
        missing = 1 - (bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        return max(1, math.ceil(missing / self.rate))


class RecentSet:
    """A bounded set of keys, the least recently added or touched dropped first."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._keys: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        if key in self._keys:
            self._keys.move_to_end(key)
            return
        if len(self._keys) >= self.max_keys:
            self._keys.popitem(last=False)
        self._keys[key] = None


class LoginGuard:
    """The defence against online guessing for one kind of login (admin users, devices). A *subject* is
    what is logged in as (a username, an IMEI), an *address* the client's (``address_key``):

    - per (subject, address): ``per_min`` attempts a minute, every attempt counted. This is the limit an
      attacker at one address meets, and it never touches the real user at another address;
    - per address: ``5 * per_min`` *failed* attempts a minute over all subjects, so that one address
      cannot spray many subjects, while many good clients behind one NAT are not limited by each
      other's successes;
    - per subject, the brake: it counts failures from addresses that never logged in as that subject
      (``5 * per_min`` per 10 minutes). While it is exhausted, each such address gets one attempt a
      minute for that subject instead of ``per_min``. It slows, it never locks: every address keeps at
      least one attempt a minute, so an attacker cannot lock the real user out from anywhere, and
      addresses that logged in as the subject before are not braked at all.

    Call :meth:`begin` before doing any work (it raises :class:`RateLimited`), then exactly one of
    :meth:`succeeded` or :meth:`failed`. Every map is bounded (``max_keys``, least recently used first).
    """

    BRAKE_PERIOD_S = 600.0

    def __init__(self, per_min: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.per_min = per_min
        self.pairs = RateLimiter(per_min, 60.0, max_keys)
        self.address_failures = RateLimiter(5 * per_min, 60.0, max_keys)
        self.brake = RateLimiter(5 * per_min, self.BRAKE_PERIOD_S, max_keys)
        self.braked_pairs = RateLimiter(1, 60.0, max_keys)
        #: (subject, address) pairs that logged in successfully
        self.known = RecentSet(max_keys)

    def key_count(self) -> int:
        """Keys held over all the guard's maps."""
        return (len(self.pairs) + len(self.address_failures) + len(self.brake) + len(self.braked_pairs)
                + len(self.known))

    @staticmethod
    def _pair(subject: str, address: str) -> str:
        return subject + "\x00" + address

    def begin(self, subject: str, address: str) -> None:
        """Admit one attempt of ``subject`` from ``address`` (both limiter keys), or raise RateLimited.
        Failures are counted when they happen (:meth:`failed`), so that many logins in flight from one
        address at once (a fleet behind one NAT after a restart) are not refused for being many."""
        now = time.monotonic()
        pair = self._pair(subject, address)
        if self.address_failures.exhausted(address, now):
            raise RateLimited("too many failed logins from this address; wait a minute",
                              retry_after=self.address_failures.retry_after(address, now))
        if not self.pairs.allow(pair, now):
            raise RateLimited("too many login attempts; wait a minute", retry_after=self.pairs.retry_after(pair, now))
        if pair not in self.known and self.brake.exhausted(subject, now) and not self.braked_pairs.allow(pair, now):
            self.pairs.refund(pair, now)
            raise RateLimited("too many failed logins for this account; wait a minute",
                              retry_after=self.braked_pairs.retry_after(pair, now))

    def succeeded(self, subject: str, address: str) -> None:
        self.known.add(self._pair(subject, address))

    def failed(self, subject: str, address: str) -> None:
        self.address_failures.allow(address)
        if self._pair(subject, address) not in self.known:
            self.brake.allow(subject)
