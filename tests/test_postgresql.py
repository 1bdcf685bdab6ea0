"""The PostgreSQL backend's health check (config/postgresql): no round trip for a kept
connection in use that the server has not ended, one ``SELECT 1`` once it has been
quiet a while, and a connection the server ended found out and made again before the
next request's first query."""

import select

import pytest
from django.db import DatabaseError, connection, connections, transaction

from config.postgresql import base
from journey.models import Journey

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backend"),
    # Outside a test's transaction: the check's own path is for an idle connection.
    pytest.mark.django_db(transaction=True),
]


def _other_connection_runs(sql: str, *params: object) -> list[tuple]:
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        other.close()


def _last_query(pid: int) -> str:
    ((query,),) = _other_connection_runs("SELECT query FROM pg_stat_activity WHERE pid = %s", pid)
    return query


def _checked_at_a_request_start() -> None:
    connection.close_if_unusable_or_obsolete()  # what request_started calls
    assert connection.health_check_done is False
    connection.close_if_health_check_failed()  # what the request's first query does
    assert connection.health_check_done is True


def _marked() -> int:
    """The connection's backend, whose last statement is now a marker."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last query before the check'")
    return connection.connection.info.backend_pid


def test_a_connection_in_use_the_server_has_not_ended_is_checked_without_a_query():
    Journey.objects.count()
    connection._answered_at = base.time.monotonic()  # as after a check's SELECT 1
    pid = _marked()

    _checked_at_a_request_start()

    assert connection.connection.info.backend_pid == pid  # kept
    assert _last_query(pid) == "SELECT 'the last query before the check'"  # no SELECT 1


def test_a_connection_quiet_for_a_while_is_asked_once_then_not_again():
    Journey.objects.count()
    connection._answered_at -= base.QUIET_FOR  # its last answer that long ago
    pid = _marked()

    _checked_at_a_request_start()
    assert _last_query(pid) == "SELECT 1"
    _marked()
    _checked_at_a_request_start()  # answered just now

    assert _last_query(pid) == "SELECT 'the last query before the check'"
    assert connection.connection.info.backend_pid == pid


def test_a_connection_the_server_ended_is_made_again_before_the_next_query():
    Journey.objects.count()
    pid = connection.connection.info.backend_pid
    connection._answered_at = base.time.monotonic()  # in the window: the poll decides
    assert _other_connection_runs("SELECT pg_terminate_backend(%s)", pid) == [(True,)]
    # The server's FATAL message and its end of the socket arrive.
    poller = select.poll()
    poller.register(connection.connection.pgconn.socket, select.POLLIN)
    assert poller.poll(5000)
    assert connection.connection.closed is False  # not known to psycopg yet

    _checked_at_a_request_start()

    assert Journey.objects.count() == 0  # no error: the check closed it, this reconnected
    assert connection.connection.info.backend_pid != pid


def test_a_connection_inside_a_transaction_is_asked_as_django_asks():
    """Not idle: the server's answer to ``SELECT 1`` decides, as in Django's check (a
    failed transaction answers with an error: unusable)."""
    with transaction.atomic():
        connection._answered_at = base.time.monotonic()
        pid = _marked()
        assert connection.is_usable() is True
        assert _last_query(pid) == "SELECT 1"
        with (
            pytest.raises(DatabaseError),
            transaction.atomic(savepoint=False),
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT 1 / 0")
        assert connection.is_usable() is False
