"""The benchmark's own arithmetic (bench/): what it reports is only as true as this."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import busy_seconds, cpu_busy, cpu_seconds, cpu_split


def test_a_process_renamed_between_readings_counts_only_what_it_spent_meanwhile():
    # A kworker's name carries the work it is doing: the same thread, renamed.
    before = {(7, 100): ("kworker/u8:0-writeback", 40.0, 0, 2), (9, 50): ("postgres", 2.0, 0, 1)}
    after = {
        (7, 100): ("kworker/u8:0-events_unbound", 40.5, 0, 2),
        (9, 50): ("postgres", 3.0, 0, 1),
    }

    assert cpu_split(before, after, events=1000) == {"postgres": 1.0, "kworker": 0.5}


def test_the_kernels_workers_are_counted_as_one():
    before = {
        (7, 100): ("kworker/u8:0-writeback", 1.0, 0, 2),
        (8, 100): ("kworker/1:3-events", 1.0, 0, 2),
    }
    after = {
        (7, 100): ("kworker/u8:0-flush-254:0", 1.2, 0, 2),
        (8, 100): ("kworker/1:3-mm", 1.3, 0, 2),
    }

    assert cpu_split(before, after, events=100) == {"kworker": 5.0}


def test_a_reused_pid_is_another_process():
    # Pid 7 ended and was given to a new process, started later: all of its CPU counts
    # (matched by pid alone, it would have spent -29.75 s).
    before = {(7, 100): ("gunicorn", 30.0, 0, 1)}
    after = {(7, 900): ("postgres", 0.25, 0, 1)}

    assert cpu_split(before, after, events=50) == {"postgres": 5.0}


def test_a_process_that_ended_meanwhile_counts_what_it_spent_until_then():
    # A database backend (pid 9) had used 2 s itself and 0.5 s in a child it had reaped
    # at the first reading, and ended with 3.5 and 0.5 s, which its parent, the
    # postmaster (pid 5), then reaped; another (pid 11) started and ended between the
    # readings with 0.25 s. Before the twenty-fifth pass both were lost: postgres 0.2 ms
    # per event instead of 1.95.
    before = {
        (5, 10): ("postgres", 1.0, 40.0, 1),
        (9, 50): ("postgres", 2.0, 0.5, 5),
        (12, 60): ("postgres", 0.5, 0.0, 5),
    }
    after = {
        (5, 10): ("postgres", 1.0, 40.0 + 4.0 + 0.25, 1),
        (12, 60): ("postgres", 0.7, 0.0, 5),
    }

    assert cpu_split(before, after, events=1000) == {"postgres": 1.95}


def test_a_process_started_meanwhile_counts_its_reaped_children_too():
    before: dict = {}
    after = {(20, 70): ("celery", 0.3, 0.2, 1)}

    assert cpu_split(before, after, events=100) == {"celery": 5.0}


def test_children_their_parent_never_reaps_are_not_taken_from_it():
    # kthreadd (pid 2) does not wait for its kworkers: one that ended takes nothing
    # from its parent's line, which would otherwise go negative (and what it spent
    # after the first reading is lost).
    before = {(2, 1): ("kthreadd", 0.1, 0.0, 0), (30, 5): ("kworker/0:1-events", 4.0, 0.0, 2)}
    after = {(2, 1): ("kthreadd", 0.1, 0.0, 0), (31, 9): ("kworker/0:2-mm", 0.1, 0.0, 2)}

    assert cpu_split(before, after, events=100) == {"kworker": 1.0}


def test_what_a_process_reaped_is_named_for_it_where_told():
    # The bench's own process (pid 3) ran wrk, which started and ended between the
    # readings with 0.4 s.
    before = {(3, 10): ("python3.13", 5.0, 0.0, 1)}
    after = {(3, 10): ("python3.13", 5.1, 0.4, 1)}

    split = cpu_split(before, after, events=100, children={3: "wrk"})

    assert split == {"wrk": 4.0, "python3.13": 1.0}


def test_only_the_four_largest_are_given():
    before: dict = {}
    after = {(pid, 1): (f"p{pid}", pid / 10, 0, 1) for pid in range(1, 7)}

    assert list(cpu_split(before, after, events=1000)) == ["p6", "p5", "p4", "p3"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads Linux's /proc")
def test_processes_are_read_from_proc_with_their_start_time():
    tick = os.sysconf("SC_CLK_TCK")
    child = subprocess.Popen(["sleep", "10"])
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        first, second = cpu_seconds(), cpu_seconds()
    finally:
        child.kill()
        child.wait()

    mine = [key for key in first if key[0] == os.getpid()]
    (started,) = [start for pid, start in first if pid == child.pid]
    # The same key in two readings, with this process's CPU so far; the child's start
    # (in clock ticks since boot) is the moment it was spawned.
    assert len(mine) == 1 and mine[0] in second and first[mine[0]][1] > 0
    assert abs(started - uptime * tick) <= 0.5 * tick
    # The child's parent is this process.
    assert first[(child.pid, started)][3] == os.getpid()


def test_busy_time_is_everything_but_idle_waiting_and_stolen():
    # cpu user nice system idle iowait irq softirq steal guest guest_nice, in ticks.
    stat = "cpu  1 2 4 8 16 32 64 128 256 512\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 5"

    assert busy_seconds(stat, tick=100) == (1 + 2 + 4 + 32 + 64) / 100


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads Linux's /proc")
def test_a_reaped_childs_cpu_is_read_in_its_parents_line():
    def reaped() -> float:
        return next(v[2] for key, v in cpu_seconds().items() if key[0] == os.getpid())

    busy, before = cpu_busy(), reaped()
    # A child that spins for 0.3 s of CPU, then ends and is reaped.
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)

    assert reaped() - before >= 0.25
    assert cpu_busy() - busy >= 0.25


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins processes (Linux)")
def test_a_round_trip_is_echoed_and_its_cpu_counted_on_both_sides():
    from bench.roundtrip import measure

    figures = measure("the scheduler's", count=300)

    # Both processes worked: at least the system calls of 300 sends and receives each.
    assert figures["cpu_us"] > 0 and figures["wall_us"] > 0
    assert 0 < figures["system_share"] <= 1


def test_a_steps_line_gives_the_hosts_speed_as_it_began_and_ended_where_measured():
    from bench.report import _how

    figures = {"command": "python -m bench.run --only page --reuse", "when": "now"}
    assert _how({**figures, "took_seconds": 196.6}) == (
        "`python -m bench.run --only page --reuse` — now, 197 s in all."
    )
    assert _how({**figures, "took_seconds": 3, "speed": [16.4, 26.3]}) == (
        "`python -m bench.run --only page --reuse` — now, 3 s in all; "
        "`sum(range(10**6))` in 16.4 ms as it began, 26.3 as it ended."
    )


def test_the_median_run_keeps_the_hosts_speed_as_it_began():
    from bench.measure import _median_run

    runs = [
        {"rps": 300.0, "events_per_second": 300.0, "speed": 25.8},
        {"rps": 436.0, "events_per_second": 436.0, "speed": 16.9},
        {"rps": 390.0, "events_per_second": 390.0, "speed": 18.2},
    ]
    median = _median_run(runs)
    assert (median["events_per_second"], median["speed"]) == (390.0, 18.2)
    assert median["events_runs"] == [300.0, 436.0, 390.0]
    assert median["speed_runs"] == [25.8, 16.9, 18.2]


def test_the_hosts_speed_is_a_number_of_milliseconds():
    from bench.host import python_speed

    speed = python_speed()
    assert isinstance(speed, float) and speed > 0
