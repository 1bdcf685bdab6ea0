"""Two checkouts' servers compared on the same host at the same moments: gunicorn's and
PostgreSQL's CPU per single event, interleaved.

On a host whose speed drifts by a fifth within minutes (the AMD EPYC hosts,
docs/performance.md), runs of two checkouts one after the other compare the host's
moments as much as the code. This starts one gunicorn worker for each checkout, side by
side on the loaded data, and sends blocks of single events to each in turn (alternating
which goes first), reading each worker's CPU from ``/proc`` around its own blocks, and
PostgreSQL's (all its processes: one server runs at a time)::

    git worktree add /tmp/old <commit>
    .venv-bench/bin/python -m bench.interleave /tmp/old .          # next stages (moving)
    .venv-bench/bin/python -m bench.interleave /tmp/old . --random # random codes and cars

Each server runs its checkout's code (its directory first on the path) with this
process's interpreter's gunicorn and the bench settings. Run it on freshly restored data
(``CREATE DATABASE milepost_bench TEMPLATE milepost_fresh``): the events move the cars.
"""

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="the first checkout's directory")
    parser.add_argument("new", type=Path, help="the second checkout's directory")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--block", type=int, default=40, help="events per block")
    parser.add_argument("--random", action="store_true", help="random codes to random cars")
    args = parser.parse_args()

    from bench.profile import factory_cars

    plain, rng, cars, now = factory_cars(name="bench-interleave", seed=7)
    from bench.measure import FACTORY_CODES, _moving_queues, cpu_seconds, cpu_spent

    queue = iter(_moving_queues(cars, threads=1)[0])

    def post(port: int) -> None:
        if args.random:
            ref, code = rng.choice(cars[:2000]), rng.choice(FACTORY_CODES)
        else:
            ref, code = next(queue).split("|")
        body = {"event_id": f"interleave-{secrets.token_hex(6)}", "code": code, "occurred_at": now}
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request(
            "POST",
            f"/api/v1/journeys/{ref}/events/",
            json.dumps(body),
            {
                "Authorization": f"Api-Key {plain}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"interleave-{secrets.token_hex(6)}",
            },
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status >= 300:
            raise SystemExit(f"{response.status} from port {port}")

    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    servers = {}
    for name, directory, port in (("old", args.old, 8421), ("new", args.new, 8422)):
        directory = directory.resolve()
        env = {**os.environ, "PYTHONPATH": str(directory)}
        command = [gunicorn, "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", "1", "--log-level", "warning"]
        servers[name] = (subprocess.Popen(command, env=env, cwd=directory), port)
    try:
        time.sleep(5)
        for _process, port in servers.values():
            for _ in range(20):  # warm: imports, caches, prepared statements
                post(port)
        spent = {name: [] for name in servers}
        database = {name: 0.0 for name in servers}
        walls = {name: 0.0 for name in servers}
        for round_ in range(args.rounds):
            for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                process, port = servers[name]
                everyone = cpu_seconds()  # read before the clock starts: it takes a few ms
                before, started = _cpu(process.pid), time.perf_counter()
                for _ in range(args.block):
                    post(port)
                walls[name] += time.perf_counter() - started
                spent[name].append((_cpu(process.pid) - before) * 1000 / TICK / args.block)
                # One server at a time: PostgreSQL's CPU meanwhile is this one's.
                database[name] += cpu_spent(everyone, cpu_seconds()).get("postgres", 0.0)
    finally:
        for process, _port in servers.values():
            process.terminate()
            process.wait()
    events = args.rounds * args.block
    for name, blocks in spent.items():
        print(
            f"{name}: gunicorn CPU {sum(blocks) / len(blocks):.2f} ms per event, PostgreSQL "
            f"{database[name] * 1000 / events:.2f}, wall {walls[name] * 1000 / events:.2f} ms; "
            f"gunicorn's blocks: {' '.join(f'{b:.1f}' for b in blocks)}"
        )


def _cpu(pid: int) -> int:
    """CPU ticks of the gunicorn master's workers."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    total = 0
    for child in children:
        fields = Path(f"/proc/{child}/stat").read_text().split()
        total += int(fields[13]) + int(fields[14])
    return total


if __name__ == "__main__":
    main()
