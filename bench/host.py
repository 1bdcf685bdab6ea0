"""What the host is like while the benchmark runs (no Django: ``bench.run`` asks before
Django is set up)."""

import timeit


def python_speed() -> float:
    """Milliseconds for ``sum(range(10**6))``, the best of five (about a tenth of a
    second): how fast this host runs Python, so runs on different hosts can be compared
    (the shared hosts here have differed threefold from one session to the next), and
    the moments of one run: the same host has run it from 16 to 26 ms within half an
    hour (a neighbour's load), so each step, and each ingest run, is probed as it
    starts."""
    return round(min(timeit.repeat("sum(range(10**6))", number=1, repeat=5)) * 1000, 1)
