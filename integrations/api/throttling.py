"""The partner API's rate limit: requests per API key, counted in the cache.

A sliding window made of two counters: this window's requests plus the last window's,
weighted by how much of it still overlaps the sliding one (Cloudflare's approximation).
DRF's own ``SimpleRateThrottle`` keeps a list of every request's time, read, unpickled,
appended to, pickled and written back on each request (hundreds of floats at the default
600/min); a counter is one ``INCR``. On Redis the three commands (``INCR``, ``EXPIRE``,
``GET``) go in one round trip.
"""

import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from integrations.models import PartnerAPIKey
from journey.cache import redis_client

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """DRF's syntax: ``600/min``, ``20/s``, ``10000/hour`` -> (requests, seconds)."""
    number, period = rate.split("/")
    return int(number), DURATIONS[period[0]]


def _counts(current: str, previous: str, ttl: int) -> tuple[int, int]:
    """Count one request in the ``current`` window; return it and the ``previous`` count."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        keys = [cache.make_and_validate_key(k) for k in (current, previous)]
        pipe = redis_client(cache).pipeline(transaction=False)
        pipe.incr(keys[0])
        pipe.expire(keys[0], ttl)
        pipe.get(keys[1])
        count, _expiry, before = pipe.execute()
        return int(count), int(before or 0)
    if cache.add(current, 1, ttl):
        count = 1
    else:
        try:
            count = cache.incr(current)
        except ValueError:  # expired between the two calls
            cache.add(current, 1, ttl)
            count = 1
    return count, int(cache.get(previous, 0))


class PartnerKeyThrottle(BaseThrottle):
    """Requests per API key (by its prefix); rate from settings.API_RATE_LIMIT."""

    def allow_request(self, request: Request, view: object) -> bool:
        self._wait: float | None = None
        # Read at each request (not at import, as DRF does) so settings can change it.
        rate = settings.API_RATE_LIMIT
        if not rate or not isinstance(request.auth, PartnerAPIKey):
            return True  # no limit; or refused by authentication anyway
        limit, duration = parse_rate(rate)
        now = time.time()
        window, elapsed = divmod(now, duration)
        base = f"throttle:partner_key:{request.auth.prefix}"
        current, previous = f"{base}:{int(window)}", f"{base}:{int(window) - 1}"
        count, before = _counts(current, previous, ttl=2 * duration)
        overlap = 1 - elapsed / duration
        if before * overlap + count <= limit:
            return True
        # Refused requests are not counted, as with DRF's throttle: a client that waits
        # as told is let in again.
        caches["default"].decr(current)
        count -= 1
        if count >= limit:
            # Full until this window ends, then until enough of it has slid out.
            self._wait = duration - elapsed + duration * max(1 - (limit - 1) / max(count, 1), 0)
        else:
            # Until enough of the last window has slid out for one more request.
            self._wait = duration * (overlap - (limit - count - 1) / before)
        self._wait = max(self._wait, 1.0)
        return False

    def wait(self) -> float | None:
        return self._wait
