"""Milepost settings, read from the environment (django-environ).

Two modes:

* the embedded default (no variables at all): SQLite in the project folder, Celery
  tasks run in-process, email to the console, DEBUG on;
* production (``MILEPOST_ENV=production``): PostgreSQL, Redis, a real Celery worker,
  SMTP. It refuses to start without SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, REDIS_URL
  and EMAIL_URL.

Any single service can also be switched on in development: DATABASE_URL alone
gives PostgreSQL, REDIS_URL alone gives Redis as cache and broker with a real worker.
docs/configuration.md lists every variable.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

MILEPOST_ENV = env.str("MILEPOST_ENV", default="development")
if MILEPOST_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(
        f"MILEPOST_ENV must be 'development' or 'production', not {MILEPOST_ENV!r}."
    )
PRODUCTION = MILEPOST_ENV == "production"


def _required(name: str) -> str:
    """A variable production cannot run without: fail at start-up, naming it."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set when MILEPOST_ENV=production (see docs/configuration.md)."
        )
    return value


if PRODUCTION:
    for _name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"):
        _required(_name)
    SECRET_KEY = env.str("SECRET_KEY")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters.")
    DEBUG = False
else:
    # A fixed development key: the embedded default needs no variables at all.
    SECRET_KEY = env.str(
        "SECRET_KEY", default="django-insecure-milepost-development-only-never-in-production"
    )
    DEBUG = env.bool("DEBUG", default=True)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- Applications -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "accounts",
    "journey",
    "notifications",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The partner API (/api/v1/) leaves here for API_MIDDLEWARE, below.
    "integrations.api.middleware.APIMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's, in English for the partner API (integrations/api/middleware.py).
    "integrations.api.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.ProfileLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.StaffMFARequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.branding",
                "notifications.context_processors.unread",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'milepost.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, with a health check that needs no round trip (config/postgresql).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Parameters bound by the server, and each statement a connection runs five
        # times kept prepared (parsed and planned once): the spine runs the same few
        # statements for every event. PostgreSQL's CPU per single partner event went
        # from 3.6 to 2.1 ms, per batch of a hundred from 29.7 to 28.3 ms, and psycopg
        # no longer quotes each value into the SQL (docs/performance.md). Turn it off
        # behind a pooler in transaction mode that does not keep prepared statements
        # (PgBouncer before 1.21, or without max_prepared_statements).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=5
        )
else:
    # SQLite: wait for a writer instead of failing with "database is locked". A
    # transaction takes the write lock when it begins (IMMEDIATE), not at its first
    # write: SQLite cannot wait to upgrade a read lock, and fails at once instead, which
    # two processes writing (runserver and make run's beat_embedded) would meet.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
    # A file, not memory, for the test database: the browser tests' live server answers
    # requests on several threads, and each needs a connection of its own. Beside the
    # database it tests, so that two checkouts or two DATABASE_URLs test side by side.
    _sqlite = Path(DATABASES["default"]["NAME"] or "milepost.sqlite3")
    if _sqlite.name == ":memory:":
        _sqlite = BASE_DIR / "milepost.sqlite3"
    DATABASES["default"]["TEST"] = {"NAME": str(_sqlite.with_name(f"test-{_sqlite.name}"))}

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "milepost",
            # A Redis that stops answering fails a request in seconds instead of holding
            # it (the rate limit, the page cache and the outbox's list of rows due all
            # use it); as the broker's transport options below.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# --- Internationalisation -----------------------------------------------------------

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("es", _("Spanish"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files and uploads -------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Photos are private: they live outside the static tree and are served only through
# a view that checks who may see the journey. There is no public MEDIA_URL.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Email (Django 6.1 MAILERS) ------------------------------------------------------

EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    _email = env.email_url("EMAIL_URL")
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _email["EMAIL_HOST"],
                "port": _email["EMAIL_PORT"],
                "username": _email["EMAIL_HOST_USER"],
                "password": _email["EMAIL_HOST_PASSWORD"],
                "use_tls": _email.get("EMAIL_USE_TLS", False),
                "use_ssl": _email.get("EMAIL_USE_SSL", False),
                "timeout": 10,
            },
        }
    }
elif env.str("EMAIL_FILE_PATH", default=""):
    # Each message written to a file in this folder (used by the worker test).
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": env.str("EMAIL_FILE_PATH")},
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
COMPANY_NAME = env.str("COMPANY_NAME", default="Milepost Motors")
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default=f"{COMPANY_NAME} <updates@milepost.example>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Celery ----------------------------------------------------------------------------

# Without a broker every task runs in-process, right after the transaction commits
# (delay_on_commit), so the embedded default needs no worker.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="milepost")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes a worker's database connections before and after every
# task unless this is set, so each task opened a new PostgreSQL connection (a backend
# forked, its catalog caches filled again) and planned every statement afresh, since
# nothing stayed prepared. A worker keeps its connection as a web process does instead:
# config/celery.py closes it between tasks only when Django would between requests
# (older than CONN_MAX_AGE, or left unusable by an error). The fixup still closes it
# after this many tasks (two signals a task), which then costs nothing much.
CELERY_DB_REUSE_MAX = 10_000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a request when Redis is down: the outbox sweep delivers
# whatever could not be queued.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_BEAT_SCHEDULE = {
    "notifications-sweep": {
        "task": "notifications.tasks.sweep_outbox",
        "schedule": timedelta(seconds=60),
    },
}
# Rows still pending this long after they were due are delivered by the sweep.
OUTBOX_SWEEP_GRACE = timedelta(seconds=env.int("OUTBOX_SWEEP_GRACE_SECONDS", default=30))
# A row claimed by a worker that died mid-send is released after this lease.
OUTBOX_CLAIM_LEASE = timedelta(seconds=env.int("OUTBOX_CLAIM_LEASE_SECONDS", default=300))

# --- django-allauth ----------------------------------------------------------------------

ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
# Confirming the address in the browser that signed up signs in and goes on to where the
# signup was headed (an invitation's link): allauth does so only for that session, so a
# confirmation link found by someone else signs nobody in. Confirmed elsewhere, the
# customer signs in, and the portal offers the invitations waiting for the address.
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
LOGIN_REDIRECT_URL = "journey:home"
LOGIN_URL = "account_login"

# --- REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["integrations.api.auth.PartnerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["integrations.api.auth.IsPartner"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["integrations.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "integrations.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Milepost partner API",
    "DESCRIPTION": "Partner systems keep journeys up to date. See docs/partner-api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Not swagger.io's online validator (a badge fetched from another host).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
}

# --- Security -----------------------------------------------------------------------------

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
# Where to report a vulnerability, published at /.well-known/security.txt (RFC 9116):
# comma-separated email addresses or mailto:/https:/tel: URIs. Unset: no file (404), and
# `check --deploy` warns. Nothing is invented.
SECURITY_CONTACT = [
    contact if contact.startswith(("mailto:", "https://", "tel:")) else f"mailto:{contact}"
    for contact in env.list("SECURITY_CONTACT", default=[])
]
if any(" " in c or (c.startswith("mailto:") and "@" not in c) for c in SECURITY_CONTACT):
    raise ImproperlyConfigured(
        "SECURITY_CONTACT: email addresses, or mailto:, https:// or tel: URIs."
    )
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "kombu": {"level": "ERROR"},
    },
}
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
# Without django.contrib.sites allauth would prefix subjects with the request's host.
# "Milepost Motors: please confirm your email address" (templates/account/email/*_subject).
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"{COMPANY_NAME}: "

# --- ETA (journey/eta.py, docs/eta.md) ---------------------------------------------------

# A template's ETA learns from its history once it has this many completed journeys;
# below that, the planned durations are used (and the basis says so).
ETA_MIN_HISTORY = env.int("ETA_MIN_HISTORY", default=20)
# How long a process uses a template's learned statistics before it reads whether they
# were recomputed (by the nightly job or a finished journey, in another process).
ETA_STATS_RECHECK_SECONDS = env.float("ETA_STATS_RECHECK_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["journey-eta-nightly"] = {
    "task": "journey.tasks.eta_recompute_nightly",
    "schedule": crontab(hour=2, minute=30),
}
CELERY_BEAT_SCHEDULE["journey-eta-stalled"] = {
    "task": "journey.tasks.eta_check_stalled",
    "schedule": timedelta(hours=1),
}

# --- Notifications (notifications/, docs/notifications.md) ---------------------------------

# After a message, further ones to the same person and channel within this window go out
# together as one digest.
NOTIFICATION_DIGEST_WINDOW = timedelta(
    seconds=env.int("NOTIFICATION_DIGEST_WINDOW_SECONDS", default=180)
)
# Replies to reply+<token>@REPLY_DOMAIN reach the inbound endpoint (the mail provider's
# inbound route posts them to /inbound/email/, signed with INBOUND_EMAIL_SECRET).
REPLY_DOMAIN = env.str("REPLY_DOMAIN", default="reply.milepost.example")
INBOUND_EMAIL_SECRET = env.str("INBOUND_EMAIL_SECRET", default="" if PRODUCTION else "dev-inbound")
STAFF_ALERT_EMAIL = env.str("STAFF_ALERT_EMAIL", default="support@milepost.example")
SMS_BACKEND = env.str("SMS_BACKEND", default="notifications.channels.LoggingSMSBackend")
SMS_PROVIDER_URL = env.str("SMS_PROVIDER_URL", default="")
SMS_PROVIDER_TOKEN = env.str("SMS_PROVIDER_TOKEN", default="")
PUSH_BACKEND = env.str("PUSH_BACKEND", default="notifications.channels.LoggingPushBackend")
PUSH_PROVIDER_URL = env.str("PUSH_PROVIDER_URL", default="")
PUSH_PROVIDER_TOKEN = env.str("PUSH_PROVIDER_TOKEN", default="")
CELERY_BEAT_SCHEDULE["notifications-reminders"] = {
    "task": "notifications.tasks.send_reminders",
    "schedule": timedelta(minutes=15),
}
# --- Partner API: limits, idempotency, webhooks (issue 5) ----------------------------------

# Requests per API key; DRF's rate syntax ("600/min", "20/s").
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/min")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["integrations.api.throttling.PartnerKeyThrottle"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "integrations.api.schema.PartnerAutoSchema"
# JSON bodies (a batch of 500 events is about 150 kB) and multipart uploads (a 20 MB
# photo plus its form fields): larger bodies are refused with a 413 in the API's shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # larger uploads are streamed to a temporary file
API_MAX_UPLOAD_BYTES = 21 * 1024 * 1024
# In both stacks: the site's still meets /api/ outside v1 (the schema, the docs, unknown
# /api/ URLs, which answer in the API's error shape).
MIDDLEWARE.append("integrations.api.middleware.APIBodyLimitMiddleware")
# What /api/v1/ runs instead of the rest of MIDDLEWARE (integrations.api.middleware.
# APIMiddleware): no static files, session, CSRF, login or messages, which a key-
# authenticated JSON API does not use. SecurityMiddleware, before it, applies to both.
API_MIDDLEWARE = [
    "integrations.api.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "integrations.api.middleware.APIBodyLimitMiddleware",
]
API_IDEMPOTENCY_TTL = timedelta(hours=24)
# A request that claimed an Idempotency-Key and never answered (killed, or the database
# went away) blocks the key for this long, then a retry may take it over. Keep it longer
# than the server's request timeout (gunicorn's --timeout, 30 s by default).
API_IDEMPOTENCY_LEASE = timedelta(seconds=env.int("API_IDEMPOTENCY_LEASE_SECONDS", default=60))
# (connect, read) seconds: a slow receiver must not hold a worker.
WEBHOOK_TIMEOUT = (3.0, 5.0)
WEBHOOK_CLAIM_LEASE = timedelta(seconds=120)
# Webhooks go to public addresses only (integrations/egress.py: no loopback, private,
# link-local... hosts, checked again before each send). True only for development and
# tests with a receiver on this machine; check --deploy warns if set in production.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=False)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "integrations.tasks.sweep_webhooks",
    "schedule": timedelta(seconds=30),
}
# The applier of partner events queued with Prefer: respond-async may have a worker of
# its own (one process is enough: one applier runs at a time), so that a burst of
# customers' messages never holds it up: name its queue here. By default it shares the
# default queue.
CELERY_INBOUND_QUEUE = env.str("CELERY_INBOUND_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_ROUTES = {
    "integrations.tasks.apply_queued_events": {"queue": CELERY_INBOUND_QUEUE},
}
# After a unit of four events or more and fewer than its 100 (GATHER_FROM, QUEUE_BATCH),
# the applier's next look is a task queued this long after (not a wait in the task), so
# that under load its units fill up (each event's share of a unit's fixed work falls);
# events that come a few to a unit are applied at once. Not when tasks run in-process.
INBOUND_QUEUE_GATHER = 0 if CELERY_TASK_ALWAYS_EAGER else 0.25
# Events whose task was lost (Redis down) are applied by this sweep.
CELERY_BEAT_SCHEDULE["inbound-queue-sweep"] = {
    "task": "integrations.tasks.apply_queued_events",
    "schedule": timedelta(seconds=30),
}
CELERY_BEAT_SCHEDULE["idempotency-purge"] = {
    "task": "integrations.tasks.purge_idempotency_records",
    "schedule": timedelta(hours=1),
}
# A partner's sandbox journeys, and their owners, go this long after they were made:
# integration tests make a new one each run (docs/partner-api.md).
SANDBOX_RETENTION = timedelta(days=env.int("SANDBOX_RETENTION_DAYS", default=30))
CELERY_BEAT_SCHEDULE["sandbox-purge"] = {
    "task": "integrations.tasks.purge_sandbox_journeys",
    "schedule": crontab(hour=3, minute=15),
}

# --- Customer portal -----------------------------------------------------------------------

# An optional map under the route schematic: a tile URL template with {z}, {x} and {y},
# e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png. Empty (the default): the schematic
# alone, and the page loads nothing from elsewhere. The tile host joins the CSP's img-src.
MAP_TILE_URL = env.str("MAP_TILE_URL", default="")
MAP_TILE_ATTRIBUTION = env.str("MAP_TILE_ATTRIBUTION", default="")
if MAP_TILE_URL:
    from urllib.parse import urlsplit

    _tiles = urlsplit(MAP_TILE_URL)
    if _tiles.scheme != "https" or not all(f"{{{k}}}" in MAP_TILE_URL for k in "zxy"):
        raise ImproperlyConfigured("MAP_TILE_URL must be https:// with {z}, {x} and {y}.")
    SECURE_CSP["img-src"] = [*SECURE_CSP["img-src"], f"https://{_tiles.netloc}"]

# --- Staff (issue 8) ------------------------------------------------------------------
# Internal words refused in customer-facing text, in addition to the JargonTerm rows
# edited in the admin (comma-separated in the environment).
JARGON_TERMS = env.list("JARGON_TERMS", default=[])
