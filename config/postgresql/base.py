"""PostgreSQL, as Django's backend, with a health check that needs no round trip.

With ``CONN_HEALTH_CHECKS`` Django checks a kept connection before each request's first
query by sending ``SELECT 1``: a round trip to the server on every request, one of the
eleven a partner's event makes (docs/performance.md). A connection the server has ended
(a restart, ``pg_terminate_backend``, ``idle_session_timeout``) is one whose server has
written its FATAL message and closed the socket: the socket is readable. So an idle
connection whose socket has nothing to read is usable, as far as anyone can know without
asking; one with anything to read (or an error, or a hang-up), or not idle, is checked
the usual way, with ``SELECT 1``. What the poll cannot see (a peer gone without a word,
behind a network partition) ``SELECT 1`` would not have seen either before its timeout.
"""

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status == pq.TransactionStatus.IDLE and _quiet(
            connection.pgconn.socket
        ):
            return True
        return super().is_usable()


def _quiet(fd: int) -> bool:
    """Whether the socket has nothing to read, no error and no hang-up, now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)
