"""PostgreSQL, as Django's backend, with a health check that needs no round trip while a
connection is in use.

With ``CONN_HEALTH_CHECKS`` Django checks a kept connection before each request's first
query by sending ``SELECT 1``: a round trip to the server on every request, one of the
ten or eleven a partner's moving event made (docs/performance.md). A connection the
server has ended (a restart, ``pg_terminate_backend``, ``idle_session_timeout``) is one
whose server has written its FATAL message and closed the socket: the socket is
readable. So an idle connection whose socket has nothing to read, and which answered a
``SELECT 1`` of this check (or was made) less than ``QUIET_FOR`` seconds ago, is usable;
any other is checked the usual way, with ``SELECT 1``. The window bounds what the poll
cannot see: a peer that says nothing until sent a packet (a database host rebooted onto
the same address, a NAT or firewall that dropped the idle flow) answers the next query
with a reset instead of the check, and that request fails, as one would have whenever
the peer went away between the check and its query. A busy connection sends one
``SELECT 1`` per ``QUIET_FOR`` seconds, not one per request.
"""

import select
import time

from django.db.backends.postgresql import base
from psycopg import pq

QUIET_FOR = 5.0


class DatabaseWrapper(base.DatabaseWrapper):
    # When the connection last answered (the check's SELECT 1, or its making).
    _answered_at = float("-inf")

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        self._answered_at = time.monotonic()
        return connection

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        now = time.monotonic()
        if (
            now - self._answered_at < QUIET_FOR
            and connection.info.transaction_status == pq.TransactionStatus.IDLE
            and _quiet(connection.pgconn.socket)
        ):
            return True
        usable = super().is_usable()
        if usable:
            self._answered_at = now
        return usable


def _quiet(fd: int) -> bool:
    """Whether the socket has nothing to read, no error and no hang-up, now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)
