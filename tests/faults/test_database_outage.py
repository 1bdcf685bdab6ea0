"""PostgreSQL stopped under load: the site answers 503 meanwhile, and recovers by itself.

A private PostgreSQL cluster (initdb under a temp dir, on a free port, run as the
``postgres`` OS user because PostgreSQL refuses to run as root) and a gunicorn serving
Milepost against it: stopping that cluster touches nothing else on the machine.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
REQUIRED = os.environ.get("MILEPOST_REQUIRE_WORKER_TESTS") == "1"
RUNUSER = shutil.which("runuser")
MISSING = (
    "PostgreSQL server binaries (/usr/lib/postgresql/*/bin)"
    if PG_BIN is None or not (PG_BIN / "initdb").exists()
    else "runuser and root (to run PostgreSQL as the postgres user)"
    if not RUNUSER or os.geteuid() != 0
    else ""
)
if MISSING and REQUIRED:
    raise RuntimeError(f"MILEPOST_REQUIRE_WORKER_TESTS=1 but the fault tests need {MISSING}.")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING}"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_postgres(*args: str) -> None:
    subprocess.run([RUNUSER, "-u", "postgres", "--", *args], check=True, capture_output=True)


class Cluster:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="milepost-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.folder / "log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [RUNUSER, "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
             "-m", "immediate", "stop"],
            capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def site() -> Iterator[tuple[Cluster, str]]:
    cluster = Cluster()
    cluster.start()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "MILEPOST_ENV", "EMAIL_FILE_PATH"}
    }
    env |= {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{cluster.port}/postgres",
        "DEBUG": "false",  # the real error handlers, as in production
    }
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}",
             "-w", "2", "--timeout", "30"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and fetch(base + "/healthz")[0] != 200:
            time.sleep(0.2)
        yield cluster, base
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        cluster.remove()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (our own server)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}, b""


API = {"Authorization": "Api-Key mp_0123abcd.not-a-real-secret", "Accept": "application/json"}


def load(base: str, rounds: int) -> list[tuple[str, int, dict[str, str], bytes]]:
    """A burst of the requests that need the database: health, the API, a login page."""
    answers = []
    for _ in range(rounds):
        for path, headers in (
            ("/healthz", {}),
            ("/api/v1/journeys/", API),
            ("/accounts/login/", {}),
        ):
            status, response_headers, body = fetch(base + path, headers)
            answers.append((path, status, response_headers, body))
    return answers


def test_the_site_answers_503_while_postgresql_is_down_and_recovers_by_itself(site):
    cluster, base = site
    healthy = {("/healthz", 200), ("/api/v1/journeys/", 401), ("/accounts/login/", 200)}
    # Healthy: the API refuses the unknown key (a database lookup).
    assert {(path, status) for path, status, _h, _b in load(base, 3)} == healthy

    cluster.stop()
    down = load(base, 5)
    assert {(path, status) for path, status, _h, _b in down} == {
        ("/healthz", 503),
        ("/api/v1/journeys/", 503),
        ("/accounts/login/", 200),  # a page that needs no database keeps working
    }
    for path, _status, headers, body in down:
        if path == "/api/v1/journeys/":
            assert headers["Retry-After"] == "30"
            assert json.loads(body)["error"]["code"] == "service_unavailable"

    cluster.start()
    # No restart of the site: the next requests open new connections.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and fetch(base + "/healthz")[0] != 200:
        time.sleep(0.2)
    assert {(path, status) for path, status, _h, _b in load(base, 3)} == healthy
