"""A Celery worker's database connection, kept from task to task as a web process keeps
it from request to request (config/celery.py, settings.CELERY_DB_REUSE_MAX)."""

import time
from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection, transaction

from config.celery import app


class _Task:
    """What the signals' receivers read of a task (a sender must be hashable)."""

    def __init__(self, *, eager: bool) -> None:
        self.request = SimpleNamespace(is_eager=eager)


def _between_tasks(task: _Task) -> None:
    """What a worker sends after one task and before the next."""
    task_postrun.send(sender=task, task=task, task_id="one")
    task_prerun.send(sender=task, task=task, task_id="two")


@pytest.mark.django_db(transaction=True)
def test_celerys_django_fixup_no_longer_closes_the_connection_around_every_task():
    """It did, before and after each task: a new PostgreSQL backend for every task, and
    every statement planned again, since nothing stayed prepared."""
    fixup = DjangoWorkerFixup(app)
    connection.ensure_connection()
    kept = connection.connection
    for _ in range(20):  # ten tasks: two calls each
        fixup.close_database()
    assert connection.connection is kept


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_connection_between_tasks_until_django_would_close_it():
    connection.ensure_connection()
    kept = connection.connection
    connection.close_at = None  # as with CONN_MAX_AGE = None: never too old
    _between_tasks(_Task(eager=False))
    assert connection.connection is kept

    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE
    _between_tasks(_Task(eager=False))
    assert connection.connection is not kept


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="to Django a SQLite connection is always usable"
)
@pytest.mark.django_db(transaction=True)
def test_a_connection_left_unusable_by_a_task_is_not_given_to_the_next():
    connection.ensure_connection()
    kept = connection.connection
    connection.close_at = None
    connection.errors_occurred = True
    kept.close()  # as a server gone away mid-task would leave it
    _between_tasks(_Task(eager=False))
    assert connection.connection is not kept
    with connection.cursor() as cursor:  # the next task connects afresh
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_a_task_run_eagerly_leaves_its_callers_connection_and_transaction_alone():
    with transaction.atomic():
        connection.ensure_connection()
        kept = connection.connection
        _between_tasks(_Task(eager=True))
        assert connection.connection is kept
        assert connection.in_atomic_block
