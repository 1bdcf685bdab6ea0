"""The journey page and its polled parts, cached under the journey's version.

What the page shows is a function of the journey's rows (whose every change moves
``Journey.version``, by database triggers), of who is looking (their id, language, time
zone, timeline order and unread count) and of the deployment (code, templates,
translations, static files, settings). The cache key holds all of these, so an entry is never stale:
a change makes a new key, and old entries simply expire.

Two things differ on every response and are never cached: the CSRF token and the CSP
nonce. The page is rendered with placeholders for both, and each response gets its own.

A polled part's ETag is the digest of its key: a browser asking "has it changed?" is
answered 304 from the version alone, without rendering anything.
"""

import hashlib
from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.middleware.csp import get_nonce
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils.translation import get_language

from journey.selectors import JourneyStamp
from notifications.services import unread_count

# Letters and digits only: they pass through HTML escaping unchanged.
CSRF_PLACEHOLDER = "mpCsrfPlaceholder9b7e41c0"
NONCE_PLACEHOLDER = "mpNoncePlaceholder3f08d2a6"
TIMEOUT = 60 * 60  # entries are never stale; this only bounds what the cache holds


@cache
def _files_digest() -> str:
    """The code, templates, translations and static files' manifest a rendering depends
    on. Read once per process: a deploy starts new processes, and a cache shared across
    deploys (Redis) must not serve one release's page to another."""
    digest = hashlib.sha256()
    base = Path(settings.BASE_DIR)
    roots = [base / "templates", *map(Path, settings.LOCALE_PATHS)]
    roots += [base / app for app in ("config", "accounts", "journey", "notifications")]
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in {".html", ".txt", ".mo", ".py"}:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.exists():
        digest.update(manifest.read_bytes())
    return digest.hexdigest()[:16]


def deployment_salt() -> str:
    """What a rendering depends on besides the data and the viewer: the files above and
    the settings the page reads."""
    names = ("COMPANY_NAME", "MAP_TILE_URL", "MAP_TILE_ATTRIBUTION", "STATIC_URL")
    return _files_digest() + repr([getattr(settings, name, None) for name in names])


def cache_key(request: HttpRequest, stamp: JourneyStamp, part: str, unread: int) -> str:
    user = request.user
    profile = getattr(user, "profile", None)
    viewer = (
        user.pk,
        get_language(),
        profile.time_zone if profile else "",
        bool(profile and profile.timeline_newest_first),
        unread,
    )
    raw = f"{deployment_salt()}|{stamp.pk}|{stamp.reference}|{stamp.version}|{part}|{viewer!r}"
    return f"journey-page:{hashlib.sha256(raw.encode()).hexdigest()[:40]}"


def cacheable(request: HttpRequest) -> bool:
    """A plain GET: no query (``?reply=``) and no message waiting to be shown once."""
    return not request.GET and not len(messages.get_messages(request))


def unread(request: HttpRequest) -> int:
    return unread_count(user=request.user)


def render_cached(
    request: HttpRequest, *, key: str, template: str, context: callable, unread: int
) -> str:
    """The page (or part) with placeholders, from the cache or rendered now and kept."""
    store = caches["default"]
    html = store.get(key)
    if html is None:
        values = context()
        values |= {
            "csrf_token": CSRF_PLACEHOLDER,
            "csp_nonce": NONCE_PLACEHOLDER,
            "unread_notifications": unread,
        }
        html = render_to_string(template, values, request)
        store.set(key, html, TIMEOUT)
    return html


def respond(request: HttpRequest, html: str, **headers: str) -> HttpResponse:
    """Fill in this response's own CSRF token and nonce."""
    html = html.replace(CSRF_PLACEHOLDER, get_token(request))
    if NONCE_PLACEHOLDER in html:
        html = html.replace(NONCE_PLACEHOLDER, str(get_nonce(request)))
    return HttpResponse(html, headers=headers or None)


def etag_of(key: str) -> str:
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'
