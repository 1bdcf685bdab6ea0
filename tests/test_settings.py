"""Settings from the environment: the embedded default, and production's refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "MILEPOST_ENV": "production",
    "SECRET_KEY": "x7#kq2!vL9@pR4$wZ8^mN1&bT6*cY3(hJ5)dF0_gS-eA+uI=oP{lK}jH[",
    "ALLOWED_HOSTS": "milepost.example",
    "DATABASE_URL": "postgres://milepost@127.0.0.1:5432/milepost",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.milepost.example:587",
    "SECURITY_CONTACT": "https://milepost.example/report-a-vulnerability",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION
        and k not in {"DEBUG", "EMAIL_FILE_PATH", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_embedded_default_needs_no_variables():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        (
            "from django.conf import settings as s;"
            "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER,"
            " s.MAILERS['default']['BACKEND'])"
        ),
        env={},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "django.db.backends.sqlite3",
        "True",
        "django.core.mail.backends.console.EmailBackend",
    ]


@pytest.mark.parametrize(
    "missing", [k for k in PRODUCTION if k not in {"MILEPOST_ENV", "SECURITY_CONTACT"}]
)
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"{missing} must be set when MILEPOST_ENV=production" in result.stderr


def test_production_refuses_a_weak_secret_key():
    result = manage("check", env={**PRODUCTION, "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 random characters" in result.stderr


def test_production_passes_the_deploy_check():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        ({"SECURITY_CONTACT": ""}, "milepost.W001"),
        ({"WEBHOOK_ALLOW_PRIVATE_HOSTS": "true"}, "milepost.W002"),
    ],
)
def test_the_deploy_check_warns_without_a_security_contact_or_with_private_webhooks(extra, warning):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, **extra})
    assert result.returncode != 0
    assert f"({warning})" in result.stderr
    assert result.stderr.count("(milepost.") == 1


def test_a_security_contact_that_is_not_a_uri_is_refused():
    result = manage("check", env={**PRODUCTION, "SECURITY_CONTACT": "call us"})
    assert result.returncode != 0
    assert "SECURITY_CONTACT: email addresses, or mailto:, https:// or tel: URIs." in result.stderr


def test_the_user_model_logs_in_with_email():
    assert settings.AUTH_USER_MODEL == "accounts.User"
    assert settings.ACCOUNT_LOGIN_METHODS == {"email"}


def test_a_map_tile_url_joins_the_csp_and_a_bad_one_is_refused():
    code = "from django.conf import settings; print(list(map(str, settings.SECURE_CSP['img-src'])))"
    tiles = "https://tile.example.org/{z}/{x}/{y}.png"
    result = manage("shell", "--no-imports", "-c", code, env={"MAP_TILE_URL": tiles})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[\"'self'\", 'data:', 'https://tile.example.org']"
    for bad in ("http://tile.example.org/{z}/{x}/{y}.png", "https://tile.example.org/{z}.png"):
        result = manage("shell", "--no-imports", "-c", code, env={"MAP_TILE_URL": bad})
        assert result.returncode != 0
        assert "MAP_TILE_URL must be https:// with {z}, {x} and {y}." in result.stderr


def test_production_sends_the_security_headers():
    """In production mode, over HTTPS: HSTS with preload, the CSP with frame-ancestors
    'none', nosniff, the referrer policy, DENY framing, and secure cookies. A forged share
    link answers 404 without touching the database, so no server is needed."""
    code = (
        "from django.test import Client;"
        "r = Client().get('/s/forged/', secure=True, HTTP_HOST='milepost.example');"
        "import json;"
        "print(json.dumps({'status': r.status_code, **{k: r.get(k, '') for k in ("
        "'Strict-Transport-Security', 'Content-Security-Policy', 'X-Content-Type-Options',"
        "'Referrer-Policy', 'X-Frame-Options', 'Cross-Origin-Opener-Policy')}}));"
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY,"
        " s.SECURE_SSL_REDIRECT)"
    )
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    headers_line, cookies_line = result.stdout.strip().splitlines()[-2:]
    headers = json.loads(headers_line)
    assert headers["status"] == 404
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # Django adds the nonce to the header only on pages that used it (this 404 did not).
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert cookies_line.split() == ["True", "True", "True", "True"]


def test_production_redirects_plain_http_to_https():
    code = (
        "from django.test import Client;"
        "r = Client().get('/healthz', HTTP_HOST='milepost.example');"
        "print(r.status_code, r['Location'])"
    )
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["301", "https://milepost.example/healthz"]


def test_login_rate_limits_count_the_client_behind_trusted_proxies():
    """Behind a load balancer, TRUSTED_PROXY_COUNT tells allauth how many X-Forwarded-For
    hops to trust, so rate limits count clients, not the proxy."""
    code = "from django.conf import settings as s; print(s.ALLAUTH_TRUSTED_PROXY_COUNT)"
    result = manage("shell", "--no-imports", "-c", code, env={"TRUSTED_PROXY_COUNT": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]


def test_the_served_process_freezes_what_startup_made_and_collects_rarely():
    # In a process of its own: the test process's collector is left as it is.
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        (
            "import gc, sys; import config.wsgi;"
            "print(gc.get_threshold()[0], gc.get_freeze_count() > 50_000,"
            " 'integrations.api.views' in sys.modules)"
        ),
        env={},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50000", "True", "True"]


@pytest.mark.parametrize(("value", "expected"), [(None, "True 5"), ("false", "None None")])
def test_postgresql_binds_parameters_on_the_server_and_prepares_repeated_statements(
    value, expected
):
    env = {"DATABASE_URL": "postgres://u@127.0.0.1:5432/x"}
    if value is not None:
        env["DB_PREPARED_STATEMENTS"] = value
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; o = s.DATABASES['default'].get('OPTIONS', {});"
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == expected
