"""PostgreSQL stopped under load: the site answers 503 meanwhile, and recovers by itself.

A private PostgreSQL cluster (initdb under a temp dir, on a free port, run as the
``postgres`` OS user because PostgreSQL refuses to run as root) and a gunicorn serving
Milepost against it (two workers of four threads, each thread with its own persistent
connection): stopping that cluster touches nothing else on the machine. Several client
threads keep requesting pages that need the database while it is stopped and started:
every answer is the normal one or a 503 with Retry-After, never a 500, never a hang.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
             "-w", "2", "--threads", "4", "--timeout", "30"],
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
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}, b""


API = {"Authorization": "Api-Key mp_0123abcd.not-a-real-secret", "Accept": "application/json"}
# Requests that need the database (the API looks the key up) and one that does not.
PATHS = (("/healthz", {}), ("/api/v1/journeys/", API), ("/accounts/login/", {}))
HEALTHY = {"/healthz": 200, "/api/v1/journeys/": 401, "/accounts/login/": 200}
DOWN = {"/healthz": 503, "/api/v1/journeys/": 503, "/accounts/login/": 200}


@dataclass(frozen=True)
class Answer:
    path: str
    status: int  # 0: no answer within the client's 10 s (a hang) or no connection
    retry_after: str | None
    error_code: str | None
    started: float
    finished: float


class Load:
    """Client threads requesting PATHS in turn, as fast as the site answers, until
    stopped; every answer is kept."""

    def __init__(self, base: str, threads: int = 6) -> None:
        self.base = base
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(offset,)) for offset in range(threads)
        ]

    def run(self, offset: int) -> None:
        turn = offset
        while not self.done.is_set():
            path, headers = PATHS[turn % len(PATHS)]
            turn += 1
            started = time.monotonic()
            status, response_headers, body = fetch(self.base + path, headers)
            code = None
            if path.startswith("/api/") and status == 503:
                code = json.loads(body)["error"]["code"]
            answer = Answer(
                path, status, response_headers.get("Retry-After"), code, started, time.monotonic()
            )
            with self.lock:
                self.answers.append(answer)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def since(self, moment: float, until: float = float("inf")) -> list[Answer]:
        """The answers to requests made at ``moment`` or later and answered before
        ``until``."""
        with self.lock:
            return [a for a in self.answers if moment <= a.started and a.finished < until]

    def wait(self, condition: Callable[[], bool], seconds: float = 60) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def test_the_site_answers_503_while_postgresql_is_down_and_recovers_by_itself(site):
    cluster, base = site
    with Load(base) as load:
        start = time.monotonic()
        assert load.wait(lambda: len(load.since(start)) >= 30)

        stopping = time.monotonic()
        cluster.stop()  # fast shutdown: the site's open connections are cut
        stopped = time.monotonic()
        # Both requests that need the database are seen failing several times.
        assert load.wait(
            lambda: all(
                sum(a.path == path and a.status == 503 for a in load.since(stopped)) >= 5
                for path in ("/healthz", "/api/v1/journeys/")
            )
        )

        restarting = time.monotonic()
        cluster.start()  # returns once PostgreSQL accepts connections
        restarted = time.monotonic()
        # No restart of the site: every thread's next request opens a new connection.
        assert load.wait(lambda: len(load.since(restarted)) >= 60)
    assert all(not thread.is_alive() for thread in load.threads)  # nothing hung

    answers = load.since(0)
    # Never a 500 nor a hang: the normal answer or 503, whenever it was asked.
    wrong = [a for a in answers if a.status not in {HEALTHY[a.path], DOWN[a.path]}]
    assert wrong == []
    unavailable = [a for a in answers if a.status == 503]
    assert {a.retry_after for a in unavailable} == {"30"}
    assert {a.error_code for a in unavailable if a.path.startswith("/api/")} == {
        "service_unavailable"
    }
    # Which answer, by when the request was made and answered.
    assert {(a.path, a.status) for a in load.since(start, stopping)} == set(HEALTHY.items())
    assert {(a.path, a.status) for a in load.since(stopped, restarting)} == set(DOWN.items())
    assert {(a.path, a.status) for a in load.since(restarted)} == set(HEALTHY.items())
