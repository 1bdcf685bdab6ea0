"""Idempotency keys with Stripe's semantics, stored per partner.

The same key with the same request answers the first response again; the same key with
another request is a conflict (409); a duplicate that arrives while the first is still
running is a conflict too, so the work is never done twice. Records expire after 24 h.

A request that dies while it holds its key (the process killed, the database gone before
the claim could be released) would otherwise block the key until it expires: the claim
is a lease (``API_IDEMPOTENCY_LEASE``, longer than the server's request timeout), and a
retry that finds it older than that takes the key over, with one conditional UPDATE so
that two retries cannot both win. That is safe because the request's writes and its
stored response commit in one transaction (``integrations.api.idempotency``): a dead
request's writes were rolled back with it, and a request that outlived its lease finds
its claim taken at ``idempotency_finish`` and rolls back too.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import IdempotencyRecord, Partner
from journey.db import create_unless_taken, mark_saved
from journey.errors import ApplicationError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: Any


def _ttl() -> timedelta:
    return getattr(settings, "API_IDEMPOTENCY_TTL", timedelta(hours=24))


def _lease() -> timedelta:
    return getattr(settings, "API_IDEMPOTENCY_LEASE", timedelta(seconds=60))


def _in_progress() -> ApplicationError:
    return ApplicationError(
        "A request with this Idempotency-Key is still being processed; retry later.",
        code="idempotency_in_progress",
        fields={HEADER: ["In progress."]},
        status=409,
    )


def idempotency_check_key(key: str) -> None:
    if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApplicationError(
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable characters.",
            fields={HEADER: ["1 to 255 printable characters."]},
        )


def idempotency_record(
    *,
    partner: Partner,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    status_code: int,
    body: Any,
) -> IdempotencyRecord:
    """A request's record with its response, not saved yet: for a request that inserts it
    in the transaction of its work, instead of claiming the key first
    (``idempotency_begin``) and storing the response at the end. A duplicate sent
    meanwhile then waits for that transaction on the key's unique constraint, and finds
    the response. The inserter must roll back its work if the key turns out taken, and
    answer as ``idempotency_begin`` then says."""
    idempotency_check_key(key)
    now = timezone.now()
    return IdempotencyRecord(
        partner=partner,
        key=key,
        method=method,
        path=path[:500],
        fingerprint=fingerprint,
        status_code=status_code,
        response_body=body,
        locked_at=now,
        expires_at=now + _ttl(),
    )


def idempotency_begin(
    *, partner: Partner, key: str, method: str, path: str, fingerprint: str
) -> IdempotencyRecord | Replay:
    """Claim ``key`` for this request, or return the first response to replay.

    Call it outside any transaction: the claim must be committed at once so that a
    concurrent duplicate sees it.
    """
    idempotency_check_key(key)
    path = path[:500]
    now = timezone.now()
    record = IdempotencyRecord(
        partner=partner,
        key=key,
        method=method,
        path=path,
        fingerprint=fingerprint,
        locked_at=now,
        expires_at=now + _ttl(),
    )
    # One INSERT, committed at once (outside the request's transaction), so a concurrent
    # duplicate sees it. An expired record in the way is deleted only when it is met; a
    # holder may also release its claim between our insert and our read: then the claim
    # is tried once more.
    if _claim(record):
        return record
    first = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
    if first is None or first.expires_at <= now:
        if first is not None:
            IdempotencyRecord.objects.filter(pk=first.pk, expires_at__lte=now).delete()
        if _claim(record):
            return record
        first = IdempotencyRecord.objects.filter(partner=partner, key=key).first()
        if first is None:
            raise _in_progress()
    if first.status_code is None:
        if first.locked_at > now - _lease():
            raise _in_progress()
        # The holder is dead (it ran past any request timeout): take its key over, as
        # if it had failed and released it. One conditional UPDATE, so of two retries
        # doing this at once exactly one matches the stale row; PostgreSQL re-checks
        # the WHERE against the winner's committed row before the loser's UPDATE.
        taken = IdempotencyRecord.objects.filter(
            pk=first.pk, status_code__isnull=True, locked_at=first.locked_at
        ).update(
            method=method,
            path=path,
            fingerprint=fingerprint,
            locked_at=now,
            expires_at=now + _ttl(),
        )
        if taken != 1:
            raise _in_progress()
        first.method, first.path, first.fingerprint = method, path, fingerprint
        first.locked_at, first.expires_at = now, now + _ttl()
        return first
    if (first.method, first.path, first.fingerprint) != (method, path, fingerprint):
        raise ApplicationError(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
            fields={HEADER: ["Used for a different request."]},
            status=409,
        )
    return Replay(status_code=first.status_code, body=first.response_body)


def _claim(record: IdempotencyRecord) -> bool:
    connection = transaction.get_connection()
    if (
        connection.vendor != "postgresql"
        or connection.in_atomic_block
        or not connection.get_autocommit()
    ):
        return create_unless_taken(record)
    return _claim_at_once(record, connection)


def _claim_at_once(record: IdempotencyRecord, connection: Any) -> bool:
    """The claim in one statement, committed on its own (autocommit) and visible to
    others at once, without waiting for the disk (a flush of the WAL): the
    ``set_config(..., true)`` in its FROM holds for its own transaction only. Safe: the
    request's own work commits later and synchronously, which flushes this too; a crash
    before that loses the claim and the work alike, and the retry claims the key again.

    ``INSERT ... SELECT`` rather than VALUES, so the setting rides in the same round trip
    (a transaction with ``SET LOCAL`` would be four); each value is cast to its column's
    type, as a SELECT list has no column to take it from (text as ``text``). ``ON
    CONFLICT DO NOTHING`` as ``create_unless_taken``: a concurrent claimer of the key
    waits for this one, and the loser inserts nothing."""
    opts = IdempotencyRecord._meta
    record.created_at = timezone.now()  # auto_now_add, as an ORM insert sets it
    fields = [f for f in opts.local_concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    # Text as text, not varchar(n): a value too long then fails as an ORM insert would,
    # where a cast to varchar(n) would cut it silently.
    values = ", ".join(
        f"CAST(%s AS {'text' if f.get_internal_type() == 'CharField' else f.db_type(connection)})"
        for f in fields
    )
    params = [f.get_db_prep_save(getattr(record, f.attname), connection) for f in fields]
    # Names from the model, values as parameters.
    sql = (
        f"INSERT INTO {quote(opts.db_table)} ({columns}) SELECT {values} "  # noqa: S608  # nosec B608
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS claim "
        f"ON CONFLICT DO NOTHING RETURNING {quote(opts.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    mark_saved(record, row[0])
    return True


def idempotency_finish(*, record: IdempotencyRecord, status_code: int, body: Any) -> None:
    """Store the response, inside the request's transaction.

    Raises a 409 when the claim was taken over meanwhile (this request outlived its
    lease): the caller's transaction must then roll back, so only the retry's work stays.
    """
    if _store(record, status_code, body) != 1:
        raise ApplicationError(
            "This request took longer than its Idempotency-Key's lease and a retry has "
            "taken the key over; nothing was done by this one. Send it again for the "
            "retry's response.",
            code="idempotency_in_progress",
            fields={HEADER: ["Taken over by a retry."]},
            status=409,
        )


_STORED = ("status_code", "response_body", "locked_at")


def _store(record: IdempotencyRecord, status_code: int, body: Any) -> int:
    """``filter(pk=..., status_code__isnull=True, locked_at=...).update(status_code=...,
    response_body=...)``, written out: the queryset cost 0.4 ms of CPU to build and
    compile on every POST with a key, the statement itself a third of that
    (docs/performance.md, twelfth pass). Each value is prepared by its field, as the
    queryset prepares it (the body by its JSONField, the time by its DateTimeField), so
    what is stored and matched is the same; the number of rows matched is returned."""
    opts = IdempotencyRecord._meta
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    status, response, locked = (opts.get_field(name) for name in _STORED)
    sql = (
        f"UPDATE {quote(opts.db_table)} "  # noqa: S608  # nosec B608: names from the model, values as parameters
        f"SET {quote(status.column)} = %s, {quote(response.column)} = %s "
        f"WHERE {quote(opts.pk.column)} = %s AND {quote(status.column)} IS NULL "
        f"AND {quote(locked.column)} = %s"
    )
    params = [
        status.get_db_prep_save(status_code, connection),
        response.get_db_prep_save(body, connection),
        opts.pk.get_db_prep_value(record.pk, connection),
        locked.get_db_prep_value(record.locked_at, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    """Forget a request that failed (nothing of it was kept), so it may be sent again.

    Only this request's own claim is deleted: not one a retry has taken over since.
    """
    IdempotencyRecord.objects.filter(
        pk=record.pk, status_code__isnull=True, locked_at=record.locked_at
    ).delete()


def idempotency_purge(*, now: datetime | None = None) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
