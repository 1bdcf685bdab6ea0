"""The cache's Redis, one round trip at a time, for what runs on every request of a kind
(the API's rate limit, the queued events' nudge, the outbox's wake-up).

Django's Redis cache makes a new Redis client at each call, and a client builds its table
of reply parsers (some 170 entries) when it is made: about a tenth of a millisecond, as
much as the command. The helpers here keep one client per cache client (which owns the
connection pool). Elsewhere than on Redis they are the cache's own calls.
"""

from typing import Any
from weakref import WeakKeyDictionary

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

# Keyed weakly by the cache client, which the Redis client does not reference, so a cache
# made again (per context under ASGI, or by a test's settings) frees its entry.
_CLIENTS: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def redis_client(cache: RedisCache) -> Any:
    """The Redis client of this cache, made once."""
    owner = cache._cache
    client = _CLIENTS.get(owner)
    if client is None:
        pool = owner._get_connection_pool(write=True)
        client = _CLIENTS[owner] = owner._client(connection_pool=pool)
    return client


def flag_set(key: str, timeout: int) -> bool:
    """Set ``key`` to 1 for ``timeout`` seconds unless it is set; True if this set it
    (the default cache's ``add``; ``get`` reads it as 1, ``delete`` clears it)."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # An int is stored as itself by Django's Redis serializer, not pickled.
        return bool(
            redis_client(cache).set(cache.make_and_validate_key(key), 1, nx=True, ex=timeout)
        )
    return cache.add(key, 1, timeout)
