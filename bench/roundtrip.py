"""What a round trip between two processes costs this host: CPU per round trip over
loopback TCP, the two processes on one CPU, on two, and where the scheduler puts them.

Every request to the partner API makes a dozen such round trips (to PostgreSQL, to
Redis, wrk to gunicorn). On the AMD EPYC virtual machines of the twenty-fifth pass one
that wakes the other CPU cost nearly three times one that stays on the same CPU
(docs/performance.md); this gives the figure for the host at hand::

    .venv-bench/bin/python -m bench.roundtrip                # 20,000 of each
    .venv-bench/bin/python -m bench.roundtrip --count 5000

Run it on a quiet machine: it measures the CPU of both processes, which another load
would share. Linux only (it pins processes to CPUs).
"""

import argparse
import os
import resource
import socket
import time

PLACES = {"one CPU": ({0}, {0}), "two CPUs": ({0}, {1}), "the scheduler's": (None, None)}


def measure(place: str, count: int) -> dict[str, float]:
    """Microseconds per round trip of one byte, echoed: wall time, and the CPU of both
    processes (user and system)."""
    mine, its = PLACES[place]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:  # the echo: answers each byte until the socket closes
        try:
            if its is not None:
                os.sched_setaffinity(0, its)
            peer, _ = listener.accept()
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := peer.recv(64):
                peer.sendall(data)
        finally:
            os._exit(0)
    listener.close()
    allowed = os.sched_getaffinity(0)
    try:
        if mine is not None:
            os.sched_setaffinity(0, mine)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(count // 10):  # warm: both processes running and placed
                client.sendall(b"x")
                client.recv(64)
            start = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            for _ in range(count):
                client.sendall(b"x")
                client.recv(64)
            wall = time.perf_counter() - started
            end = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.sched_setaffinity(0, allowed)
    _, status, echo = os.wait4(child, 0)
    if status:
        raise RuntimeError(f"the echo process ended with status {status}")
    # The echo's CPU is all of its life, the warm-up's tenth included: a few per cent.
    own = end.ru_utime - start.ru_utime + end.ru_stime - start.ru_stime
    other = echo.ru_utime + echo.ru_stime
    return {
        "wall_us": wall / count * 1e6,
        "cpu_us": (own + other) / count * 1e6,
        "system_share": (end.ru_stime - start.ru_stime + echo.ru_stime) / (own + other),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="round trips of each")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        raise SystemExit("This needs CPUs 0 and 1.")
    for place in PLACES:
        figures = measure(place, args.count)
        print(
            f"{place:>16}: {figures['wall_us']:6.1f} µs a round trip, {figures['cpu_us']:6.1f} µs "
            f"of CPU ({figures['system_share']:.0%} of it the kernel's)"
        )


if __name__ == "__main__":
    main()
