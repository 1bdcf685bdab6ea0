"""What a round trip between two processes costs this host: CPU per round trip over
loopback TCP, the two processes on one CPU, on two, and where the scheduler puts them.

Every request to the partner API makes a dozen such round trips (to PostgreSQL, to
Redis, wrk to gunicorn). On the AMD EPYC virtual machines of the twenty-fifth pass one
that wakes the other CPU cost about three times one that stays on the same CPU
(docs/performance.md); this gives the figures for the host at hand::

    .venv-bench/bin/python -m bench.roundtrip                # 20,000 of each
    .venv-bench/bin/python -m bench.roundtrip --busy         # with both CPUs kept busy
    .venv-bench/bin/python -m bench.roundtrip --count 5000

``--busy`` keeps both CPUs busy meanwhile with a spinner each at the lowest priority,
standing in for a load (the ingest step keeps both busy): a CPU that is busy is not
woken from idle, and the scheduler places a waking process differently. Otherwise run
it on a quiet machine: it measures the CPU of both processes, which another load would
share. Linux only (it pins processes to CPUs).
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

PLACES = {"one CPU": ({0}, {0}), "two CPUs": ({0}, {1}), "the scheduler's": (None, None)}
SPIN = "import os\nos.nice(19)\nos.sched_setaffinity(0, {%d})\nwhile True: pass"


def echo(port: int, cpus: set[int] | None) -> None:
    """The other process: echoes each byte; at b"s" it starts counting its CPU, and at b"e"
    answers with what it has used since (user and system seconds), then ends."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
        peer.settimeout(None)
        peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = resource.getrusage(resource.RUSAGE_SELF)
        while data := peer.recv(64):
            if data == b"s":
                started = resource.getrusage(resource.RUSAGE_SELF)
            elif data == b"e":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                user, system = (
                    usage.ru_utime - started.ru_utime,
                    usage.ru_stime - started.ru_stime,
                )
                peer.sendall(f"{user} {system}".encode())
                return
            peer.sendall(data)


def measure(place: str, count: int) -> dict[str, float]:
    """Microseconds per round trip of one byte, echoed: wall time, and the CPU of both
    processes (user and system) over the round trips counted, the warm-up's left out."""
    mine, its = PLACES[place]
    allowed = os.sched_getaffinity(0)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        command = [
            sys.executable,
            "-m",
            "bench.roundtrip",
            "--echo",
            str(listener.getsockname()[1]),
        ]
        command += [] if its is None else ["--cpu", str(*its)]
        other = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])
        try:
            if mine is not None:
                os.sched_setaffinity(0, mine)
            client, _ = listener.accept()
            with client:
                client.settimeout(None)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(count // 10):  # warm: both processes running and placed
                    client.sendall(b"x")
                    client.recv(64)
                client.sendall(b"s")
                client.recv(64)
                start = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                for _ in range(count):
                    client.sendall(b"x")
                    client.recv(64)
                wall = time.perf_counter() - started
                end = resource.getrusage(resource.RUSAGE_SELF)
                client.sendall(b"e")
                its_user, its_system = (float(v) for v in client.recv(64).split())
        finally:
            os.sched_setaffinity(0, allowed)
            try:
                other.wait(timeout=10)
            except subprocess.TimeoutExpired:
                other.kill()
                other.wait()
    if other.returncode:
        raise RuntimeError(f"the echo process ended with status {other.returncode}")
    user = end.ru_utime - start.ru_utime + its_user
    system = end.ru_stime - start.ru_stime + its_system
    return {
        "wall_us": wall / count * 1e6,
        "cpu_us": (user + system) / count * 1e6,
        "system_share": system / (user + system),
    }


@contextmanager
def busy(cpus: set[int]):
    """A spinner at the lowest priority on each of ``cpus`` meanwhile."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN % cpu]) for cpu in sorted(cpus)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="round trips of each")
    parser.add_argument("--busy", action="store_true", help="both CPUs kept busy meanwhile")
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # the other process
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo is not None:
        echo(args.echo, None if args.cpu is None else {args.cpu})
        return
    if not {0, 1} <= os.sched_getaffinity(0):
        raise SystemExit("This needs CPUs 0 and 1.")
    with busy({0, 1}) if args.busy else nullcontext():
        for place in PLACES:
            figures = measure(place, args.count)
            print(
                f"{place:>16}: {figures['wall_us']:6.1f} µs a round trip, "
                f"{figures['cpu_us']:6.1f} µs of CPU ({figures['system_share']:.0%} of it "
                "the kernel's)"
            )


if __name__ == "__main__":
    main()
