"""Settings from the environment: the embedded default, and production's refusals."""

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


@pytest.mark.parametrize("missing", [k for k in PRODUCTION if k != "MILEPOST_ENV"])
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
