import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import Resolver404, resolve, reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, parsers, serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Source
from accounts.services import profile_propose_change
from integrations.api.auth import journey_read_with_key
from integrations.api.errors import exception_handler
from integrations.api.idempotency import idempotent, request_fingerprint, rolled_back_whole
from integrations.api.pagination import CursorPage, OldestFirstCursorPage
from integrations.api.schema import ErrorSerializer
from integrations.api.serializers import (
    AppointmentSerializer,
    AppointmentUpdateSerializer,
    BatchEventInSerializer,
    BatchInSerializer,
    BatchOutSerializer,
    CheckpointSerializer,
    JourneySerializer,
    LegOutSerializer,
    LegSerializer,
    LegUpdateSerializer,
    PhotoInSerializer,
    PhotoOutSerializer,
    ProfileChangeInSerializer,
    ProfileChangeOutSerializer,
    SandboxJourneyInSerializer,
    StatusEventInSerializer,
    StatusEventOutSerializer,
    TaskSerializer,
    WebhookEndpointSerializer,
    WebhookSecretSerializer,
)
from integrations.idempotency import HEADER, idempotency_check_key, idempotency_record
from integrations.models import IdempotencyRecord, InboundEvent, Partner, WebhookEndpoint
from integrations.sandbox import sandbox_journey_create
from integrations.selectors import (
    journey_appointments,
    journey_legs,
    journey_photos,
    journey_tasks,
    leg_checkpoints,
    partner_journeys,
)
from integrations.services import (
    InboundResult,
    StatusEventIn,
    StatusEventsPrepared,
    inbound_warnings,
    partner_journey_served,
    partner_queue_status_event,
    partner_queue_status_event_at_once,
    partner_record_status_event,
    partner_record_status_event_at_once,
    partner_status_events_finish,
    partner_status_events_prepare,
)
from integrations.webhooks import webhook_endpoint_create, webhook_endpoint_rotate_secret
from journey import services as journey_services
from journey.compiled import CompiledRead
from journey.errors import ApplicationError
from journey.models import Appointment, CustomerTask, Journey, Milestone, ShipmentLeg
from journey.photos import photo_add

logger = logging.getLogger(__name__)


def _served_for_spine(partner: int, reference: str) -> QuerySet[Journey]:
    return journey_services.journeys_for_spine().filter(partners=partner, reference=reference)


# Read on every event posted: compiled once (journey.compiled).
_SERVED_FOR_SPINE = CompiledRead(_served_for_spine)


def _served_for_spine_among(partner: int, references: list[str]) -> QuerySet[Journey]:
    return (
        journey_services.journeys_for_spine()
        .order_by()
        .filter(partners=partner, reference__one_of=references)
    )


# Read for every batch: compiled once, the references as one parameter (journey.compiled).
_SERVED_FOR_SPINE_AMONG = CompiledRead(_served_for_spine_among, whole=("references",))


_REFERENCE_LENGTH = Journey._meta.get_field("reference").max_length


def _may_be(reference: str) -> bool:
    """Whether ``reference`` may name a journey: short enough (a NUL, which PostgreSQL
    refuses, is answered 404 before: ``APIBodyLimitMiddleware``)."""
    return len(reference) <= _REFERENCE_LENGTH


def _journey(request: Request, reference: str, *, for_spine: bool = False) -> Journey:
    """A journey this partner serves; any other answers 404, before anything is read.

    The row alone (one query): what writes to it locks and loads it again; or, for the
    spine, with what it reads (``journeys_for_spine``), which it then only locks: the
    one the key's read brought (``journey_read_with_key``: no query), else read here."""
    if not for_spine:
        return get_object_or_404(Journey, partners=request.user, reference=reference)
    journey = journey_read_with_key(request, reference)
    if journey is not None:
        return journey
    try:
        return _SERVED_FOR_SPINE.get(partner=request.user.pk, reference=reference)
    except Journey.DoesNotExist:
        raise Http404("No Journey matches the given query.") from None


@contextlib.contextmanager
def _gone_as_404(reference: str) -> Iterator[None]:
    """An event's row names its journey, whose foreign key is checked when the
    transaction commits: a journey deleted after the request read it (by staff, or a
    sandbox journey purged) fails the commit of a queued event, which locks nothing.
    That answers 404, as the request would have a moment later, not 500; nothing was
    written. Any other failure (the journey is still there) is raised as it was. The
    commit is the request's own: inside an outer transaction (``ATOMIC_REQUESTS``) it
    would come later, and the read here would fail in the aborted transaction.

    An event applied at once refuses such a journey itself, before its commit
    (``_refuse_for_a_deleted_journey``, a 404 naming the field); this catches what that
    misses, and says so in the log."""
    try:
        yield
    except IntegrityError:
        if (
            transaction.get_connection().in_atomic_block
            or Journey.objects.filter(reference=reference).exists()
        ):
            raise
        logger.warning(
            "Journey %s was deleted while an event for it was recorded: answered 404.",
            reference,
            exc_info=True,
        )
        raise Http404("No Journey matches the given query.") from None


class JourneyList(generics.ListAPIView):
    """The journeys this partner serves, with their milestones: newest first, in pages
    (follow ``next``)."""

    serializer_class = JourneySerializer
    pagination_class = CursorPage

    def get_queryset(self) -> QuerySet[Journey]:
        return partner_journeys(partner=self.request.user)


class JourneyDetail(generics.RetrieveAPIView):
    """One journey; any journey this partner does not serve answers 404."""

    serializer_class = JourneySerializer
    lookup_field = "reference"

    def get_queryset(self) -> QuerySet[Journey]:
        return partner_journeys(partner=self.request.user)


def _record(
    partner: Partner,
    journey: Journey,
    data: dict[str, Any],
    raw: Any,
    prepared: StatusEventsPrepared | None = None,
    *,
    savepoint: bool = True,
) -> InboundResult:
    return partner_record_status_event(
        partner=partner,
        journey=journey,
        event_id=data["event_id"],
        code=data["code"],
        occurred_at=data["occurred_at"],
        payload=_payload(raw),
        prepared=prepared,
        savepoint=savepoint,
    )


def _payload(raw: Any) -> dict[str, Any]:
    """The event as sent is kept for audit (whatever extra keys it has)."""
    return raw if isinstance(raw, dict) else {}


# StatusEventOutSerializer's own field for its two times: the schema keeps the
# serializer, and the body is built as it would build it without its per-item machinery
# (a tenth of a millisecond an event, a tenth of a batch's time).
_TIME = serializers.DateTimeField()


def _event_out(result: InboundResult) -> dict[str, Any]:
    """The body StatusEventOutSerializer describes (tests compare the two)."""
    inbound = result.inbound
    return {
        "event_id": inbound.event_id,
        "journey": inbound.journey.reference,
        "code": inbound.code,
        "occurred_at": _TIME.to_representation(inbound.occurred_at),
        "received_at": _TIME.to_representation(inbound.received_at),
        "applied": result.applied,
        "duplicate": result.duplicate,
        "state": inbound.state,
        "error": inbound.rejection,
        "warnings": [str(warning) for warning in result.warnings],
    }


def _event_status(result: InboundResult) -> int:
    if result.duplicate:
        return status.HTTP_200_OK
    if result.inbound.unmapped or result.inbound.queued:
        return status.HTTP_202_ACCEPTED
    return status.HTTP_201_CREATED


_EVENT_IN = threading.local()


def _event_in(data: Any) -> dict[str, Any]:
    """``StatusEventInSerializer(data=data)``'s validated data, or its ValidationError, as
    ``is_valid(raise_exception=True)`` gives them; on one serializer per thread, set up
    once, as the batch endpoint validates its items on one: DRF deep-copies a
    serializer's fields each time one is made, which cost as much as the validation."""
    parser = getattr(_EVENT_IN, "parser", None)
    if parser is None:
        parser = _EVENT_IN.parser = StatusEventInSerializer()
    parser.initial_data = data  # as is_valid() would (its validate() reads it)
    return parser.run_validation(data)


def _prefers_async(request: Request) -> bool:
    """Whether the request asks to be answered before its work is done (RFC 7240's
    ``Prefer: respond-async``, among any other preferences)."""
    return any(
        preference.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async"
        for preference in request.headers.get("Prefer", "").split(",")
    )


def _event_body(result: InboundResult) -> tuple[dict[str, Any], int]:
    return _event_out(result), _event_status(result)


class JourneyEventCreate(APIView):
    """Post one status event for a journey.

    With ``Prefer: respond-async`` the event is checked and stored, answered 202 with
    state ``queued``, and applied by a worker within moments; read its outcome at
    ``journeys/{reference}/events/{event_id}/``."""

    def journey_for_spine(self, request: Request) -> str | None:
        """The journey this request reads for the spine, for the key's read to bring
        (``PartnerKeyAuthentication``): an event to apply now, not one to queue, for a
        reference that may be one."""
        reference = self.kwargs["reference"]
        if request.method != "POST" or _prefers_async(request) or not _may_be(reference):
            return None
        return reference

    @extend_schema(
        request=StatusEventInSerializer,
        parameters=[
            OpenApiParameter(
                "Prefer",
                str,
                OpenApiParameter.HEADER,
                description="respond-async: answer 202 once the event is stored, and apply "
                "it in the background.",
            )
        ],
        responses={
            201: StatusEventOutSerializer,
            200: OpenApiResponse(StatusEventOutSerializer, description="Already received."),
            202: OpenApiResponse(
                StatusEventOutSerializer,
                description="Unmapped code: kept. Or, with Prefer: respond-async, queued.",
            ),
        },
    )
    def post(self, request: Request, reference: str) -> Response:
        with _gone_as_404(reference):
            if not _prefers_async(request):
                response = self._at_once(request, reference, queue=False)
                if response is None:
                    response = self._record(request, reference)
            else:
                response = self._at_once(request, reference, queue=True)
                if response is None:
                    response = self._queue(request, reference)
        body = response.data
        if (
            response.status_code == 202
            and body.get("state") == "queued"
            and body.get("duplicate") is False
        ):
            # Here, not in the answer stored: a replay (Idempotent-Replayed) has them too,
            # the retry of a queued event that leaves Prefer out included.
            response["Preference-Applied"] = "respond-async"
            response["Location"] = reverse(
                "api:journey-event",
                kwargs={"reference": body["journey"], "event_id": body["event_id"]},
            )
        return response

    @idempotent
    def _record(self, request: Request, reference: str) -> Response:
        journey = _journey(request, reference, for_spine=True)
        data = _event_in(request.data)
        # Under an Idempotency-Key a refused event fails the request's transaction whole:
        # no savepoint of the event's own (two statements fewer).
        result = _record(
            request.user,
            journey,
            data,
            request.data,
            savepoint=not rolled_back_whole(request),
        )
        body, code = _event_body(result)
        return Response(body, status=code)

    @idempotent
    def _queue(self, request: Request, reference: str) -> Response:
        event = self._queued_event(request, reference)
        body, code = _event_body(partner_queue_status_event(**event))
        return Response(body, status=code)

    def _at_once(self, request: Request, reference: str, *, queue: bool) -> Response | None:
        """The usual request, with an Idempotency-Key, on PostgreSQL: its work and the
        key's record with its answer in one transaction, the record written in the
        statement of the work's writes, instead of the key claimed first and its answer
        stored last (three round trips fewer for an event applied, two for one queued:
        ``partner_record_status_event_at_once``, ``partner_queue_status_event_at_once``).
        None if anything was not as usual (the event_id or the key taken: a retry, a
        duplicate) or anything refused (a bad key, body, journey or time, a stage the
        journey lacks): ``_record`` or ``_queue`` then answers, as it would have without
        this, and looks at the key first."""
        key = request.headers.get(HEADER)
        if key is None or transaction.get_connection().vendor != "postgresql":
            return None
        try:
            idempotency_check_key(key)
            event = (
                self._queued_event(request, reference) if queue else self._event(request, reference)
            )
        except (ApplicationError, Http404, APIException):
            # The usual way answers, after the key: a retry of a request answered
            # before is replayed, and a key used for another request is 409, whatever
            # this body (invalid, unreadable, of another media type) or journey is now.
            return None
        fingerprint = request_fingerprint(request)

        def answer(result: InboundResult) -> IdempotencyRecord:
            body, code = _event_body(result)
            return idempotency_record(
                partner=request.user,
                key=key,
                method=request.method,
                path=request.path,
                fingerprint=fingerprint,
                status_code=code,
                body=body,
            )

        at_once = (
            partner_queue_status_event_at_once if queue else partner_record_status_event_at_once
        )
        try:
            with transaction.atomic():
                record = at_once(**event, answer=answer)
        except ApplicationError:
            return None  # refused: the usual way says so, after the key
        except OperationalError:
            # A duplicate sent at the same moment may meet this one's two rows in the
            # other order (PostgreSQL deadlock detection ends one): the usual way sorts
            # it out.
            return None
        if record is None:
            return None
        return Response(record.response_body, status=record.status_code)

    def _queued_event(self, request: Request, reference: str) -> dict[str, Any]:
        """The event to queue, as the queueing services take it: the journey this
        partner serves (404 otherwise), then the body, validated (400)."""
        journey = partner_journey_served(partner=request.user, reference=reference)
        if journey is None:
            raise Http404("No Journey matches the given query.")
        return self._event(request, reference, journey)

    def _event(
        self, request: Request, reference: str, journey: Journey | None = None
    ) -> dict[str, Any]:
        """The event as the services take it: the journey this partner serves, read for
        the spine unless given (404 otherwise), then the body, validated (400)."""
        if journey is None:
            journey = _journey(request, reference, for_spine=True)
        data = _event_in(request.data)
        return {
            "partner": request.user,
            "journey": journey,
            "event_id": data["event_id"],
            "code": data["code"],
            "occurred_at": data["occurred_at"],
            "payload": _payload(request.data),
        }


def _received_event(partner: int, reference: str, event_id: str) -> QuerySet[InboundEvent]:
    return InboundEvent.objects.filter(
        partner=partner, journey__reference=reference, event_id=event_id
    ).select_related("journey", "journey_event")


_RECEIVED_EVENT = CompiledRead(_received_event)


class JourneyEventDetail(APIView):
    """A status event this partner sent for a journey, by its event_id: where it stands
    (``queued`` until a worker has applied an event sent with Prefer: respond-async)."""

    @extend_schema(responses={200: StatusEventOutSerializer})
    def get(self, request: Request, reference: str, event_id: str) -> Response:
        try:
            inbound = _RECEIVED_EVENT.get(
                partner=request.user.pk, reference=reference, event_id=event_id
            )
        except InboundEvent.DoesNotExist:
            raise NotFound("No such event for this journey.") from None
        result = InboundResult(
            inbound=inbound,
            applied=inbound.state == "applied",
            duplicate=False,
            warnings=inbound_warnings(inbound),
        )
        return Response(_event_out(result))


class JourneyProfileChangeCreate(APIView):
    """Propose a change to the details of the customer who owns a journey.

    A field the customer has not filled in yet is filled in directly; otherwise the
    customer is asked and decides. Nothing the customer entered is ever overwritten.
    """

    @extend_schema(request=ProfileChangeInSerializer, responses={201: ProfileChangeOutSerializer})
    @idempotent
    def post(self, request: Request, reference: str) -> Response:
        journey = get_object_or_404(
            partner_journeys(partner=request.user).select_related("owner"), reference=reference
        )
        serializer = ProfileChangeInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        proposal = profile_propose_change(
            user=journey.owner,
            field=data["field"],
            value=data["value"],
            reason=data["reason"],
            source=Source.PARTNER,
            actor_name=request.user.name,
            partner=request.user,
        )
        body = {"field": data["field"], "state": "applied" if proposal is None else "pending"}
        return Response(ProfileChangeOutSerializer(body).data, status=status.HTTP_201_CREATED)


class EventBatchCreate(APIView):
    """Post up to 500 status events at once: one result per item, in order.

    A bad item fails alone (it is refused before anything of it is written); its result
    carries the status and error the single-event endpoint would have answered.

    The batch is one transaction that claims its event ids and locks all its journeys
    first, each in one statement and in a fixed order: two batches that share journeys
    wait for each other instead of locking them in their items' orders and deadlocking
    (docs/partner-api.md).
    """

    @extend_schema(request=BatchInSerializer, responses={200: BatchOutSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        batch = BatchInSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        items = batch.validated_data["events"]
        references = sorted(
            {str(item.get("journey")) for item in items if isinstance(item, Mapping)}
        )
        journeys = {
            j.reference: j
            for j in _SERVED_FOR_SPINE_AMONG.list(partner=request.user.pk, references=references)
        }
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, Journey, dict[str, Any]]] = []
        # One serializer for all the items: its fields are set up once, not per item.
        parser = BatchEventInSerializer()
        for index, item in enumerate(items):
            try:
                valid.append((index, *self._parse(parser, item, journeys)))
                results.append({})
            except (ApplicationError, serializers.ValidationError) as error:
                results.append(self._error(request, index, error))
        recorded: list[tuple[int, InboundResult]] = []
        with transaction.atomic():
            prepared = partner_status_events_prepare(
                partner=request.user,
                events=[
                    StatusEventIn(
                        journey=journey,
                        event_id=data["event_id"],
                        code=data["code"],
                        occurred_at=data["occurred_at"],
                        payload=_payload(items[index]),
                    )
                    for index, journey, data in valid
                ],
            )
            for index, journey, data in valid:
                try:
                    result = _record(request.user, journey, data, items[index], prepared)
                except ApplicationError as error:
                    results[index] = self._error(request, index, error)
                else:
                    recorded.append((index, result))
            partner_status_events_finish(prepared=prepared)
        bodies = [_event_out(r) for _i, r in recorded]
        for (index, result), body in zip(recorded, bodies, strict=True):
            results[index] = {
                "index": index,
                "status": _event_status(result),
                "event": body,
                "error": None,
            }
        return Response({"results": results}, status=status.HTTP_200_OK)

    def _parse(
        self, parser: BatchEventInSerializer, item: dict[str, Any], journeys: dict[str, Journey]
    ) -> tuple[Journey, dict[str, Any]]:
        # As is_valid() would, on the shared instance (DRF's ListSerializer does the same).
        parser.initial_data = item
        data = parser.run_validation(item)
        journey = journeys.get(data["journey"])
        if journey is None:
            raise ApplicationError(
                "No such journey.",
                code="not_found",
                fields={"journey": ["Unknown journey."]},
                status=404,
            )
        return journey, data

    def _error(
        self, request: Request, index: int, error: ApplicationError | serializers.ValidationError
    ) -> dict[str, Any]:
        response = exception_handler(error, {"request": request, "view": self})
        return {"index": index, "status": response.status_code, "event": None, **response.data}


def _page(view: APIView, request: Request, queryset: QuerySet, serializer: type) -> Response:
    """One page of ``queryset`` in the view's pagination, as ``serializer`` writes each."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


class LegListCreate(APIView):
    """A journey's shipment legs: read them (all at once: a journey has a few), add one."""

    @extend_schema(responses={200: LegOutSerializer(many=True)})
    def get(self, request: Request, reference: str) -> Response:
        legs = journey_legs(journey=_journey(request, reference))
        return Response(LegOutSerializer(legs, many=True).data)

    @extend_schema(request=LegSerializer, responses={201: LegOutSerializer})
    @idempotent
    def post(self, request: Request, reference: str) -> Response:
        journey = _journey(request, reference)
        serializer = LegSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        leg = journey_services.journey_leg_create(journey=journey, **serializer.validated_data)
        return Response(LegOutSerializer(leg).data, status=status.HTTP_201_CREATED)


def _leg(request: Request, reference: str, sequence: int) -> ShipmentLeg:
    return get_object_or_404(ShipmentLeg, journey=_journey(request, reference), sequence=sequence)


class LegDetail(APIView):
    """One leg: read it; change it (departure, arrival, ETA, places)."""

    @extend_schema(responses={200: LegOutSerializer})
    def get(self, request: Request, reference: str, sequence: int) -> Response:
        return Response(LegOutSerializer(_leg(request, reference, sequence)).data)

    @extend_schema(request=LegUpdateSerializer, responses={200: LegOutSerializer})
    def patch(self, request: Request, reference: str, sequence: int) -> Response:
        leg = _leg(request, reference, sequence)
        serializer = LegUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        leg = journey_services.journey_leg_update(leg=leg, **serializer.validated_data)
        return Response(LegOutSerializer(leg).data)


class CheckpointListCreate(APIView):
    """Where a leg's shipment was seen: read them, in pages, in the order they were posted
    (a long voyage reports many); record one."""

    pagination_class = OldestFirstCursorPage

    @extend_schema(responses={200: CheckpointSerializer(many=True)})
    def get(self, request: Request, reference: str, sequence: int) -> Response:
        checkpoints = leg_checkpoints(leg=_leg(request, reference, sequence))
        return _page(self, request, checkpoints, CheckpointSerializer)

    @extend_schema(request=CheckpointSerializer, responses={201: CheckpointSerializer})
    @idempotent
    def post(self, request: Request, reference: str, sequence: int) -> Response:
        leg = _leg(request, reference, sequence)
        serializer = CheckpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        checkpoint = journey_services.journey_checkpoint_add(leg=leg, **serializer.validated_data)
        return Response(CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


class PhotoListCreate(APIView):
    """A journey's photos: read them, in pages, in the order they were posted; upload one
    (multipart): JPEG, PNG or WebP, at most 20 MB and 50 megapixels.

    Metadata (GPS included) is stripped; the thumbnail is made in the background.
    """

    parser_classes = [parsers.MultiPartParser]
    pagination_class = OldestFirstCursorPage

    @extend_schema(responses={200: PhotoOutSerializer(many=True)})
    def get(self, request: Request, reference: str) -> Response:
        photos = journey_photos(journey=_journey(request, reference))
        return _page(self, request, photos, PhotoOutSerializer)

    @extend_schema(
        request={"multipart/form-data": PhotoInSerializer}, responses={201: PhotoOutSerializer}
    )
    @idempotent
    def post(self, request: Request, reference: str) -> Response:
        journey = _journey(request, reference)
        serializer = PhotoInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        milestone = _milestone_by_key(journey, data["milestone"]) if data.get("milestone") else None
        photo = photo_add(
            journey=journey,
            milestone=milestone,
            file=data["file"],
            caption=data.get("caption", ""),
        )
        return Response(PhotoOutSerializer(photo).data, status=status.HTTP_201_CREATED)


class TaskListCreate(APIView):
    """What the customer is asked to do: read it (all at once: a customer is given a
    handful of tasks, all shown on one page); ask for something."""

    @extend_schema(responses={200: TaskSerializer(many=True)})
    def get(self, request: Request, reference: str) -> Response:
        tasks = journey_tasks(journey=_journey(request, reference))
        return Response(TaskSerializer(tasks, many=True).data)

    @extend_schema(request=TaskSerializer, responses={201: TaskSerializer})
    @idempotent
    def post(self, request: Request, reference: str) -> Response:
        journey = _journey(request, reference)
        serializer = TaskSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = journey_services.journey_task_create(journey=journey, **serializer.validated_data)
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)


def _conflict(why: str) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description=f"conflict: {why}. Or the Idempotency-Key was used for another "
        "request, or is in flight.",
    )


def _task(request: Request, reference: str, pk: int) -> CustomerTask:
    """A task of a journey this partner serves; any other (another journey's, one of a
    journey not served) answers 404."""
    return get_object_or_404(CustomerTask, journey=_journey(request, reference), pk=pk)


class TaskDetail(APIView):
    """One task: read it; change it (title, description, due date) until the customer has
    done it; withdraw it (it leaves the customer's page; they are sent no message)."""

    @extend_schema(responses={200: TaskSerializer})
    def get(self, request: Request, reference: str, pk: int) -> Response:
        return Response(TaskSerializer(_task(request, reference, pk)).data)

    @extend_schema(
        request=TaskSerializer,
        responses={
            200: TaskSerializer,
            409: _conflict("the customer has done it"),
        },
    )
    @idempotent
    def patch(self, request: Request, reference: str, pk: int) -> Response:
        task = _task(request, reference, pk)
        serializer = TaskSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        task = journey_services.journey_task_update(task=task, **serializer.validated_data)
        return Response(TaskSerializer(task).data)

    @extend_schema(
        request=None,
        responses={
            204: None,
            409: _conflict("the customer has done it"),
        },
    )
    @idempotent
    def delete(self, request: Request, reference: str, pk: int) -> Response:
        journey_services.journey_task_withdraw(task=_task(request, reference, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _appointment(request: Request, reference: str, pk: int) -> Appointment:
    """An appointment of a journey this partner serves; any other answers 404."""
    return get_object_or_404(
        Appointment.objects.select_related("milestone__stage"),
        journey=_journey(request, reference),
        pk=pk,
    )


def _appointment_changes(serializer: AppointmentSerializer, journey: Journey) -> dict[str, Any]:
    """The serializer's fields as the services take them (a duration, not minutes; the
    journey's milestone, not its stage key: 400 naming the field if it has none)."""
    data = dict(serializer.validated_data)
    if "duration_minutes" in data:
        data["duration"] = timedelta(minutes=data.pop("duration_minutes"))
    if data.get("milestone") is not None:
        data["milestone"] = _milestone_by_key(journey, data["milestone"])
    return data


def _milestone_by_key(journey: Journey, key: str) -> Milestone:
    """The journey's milestone of this stage key; 400 naming ``milestone`` if none."""
    milestone = journey.milestones.filter(stage__key=key).select_related("stage").first()
    if milestone is None:
        raise ApplicationError(
            f"This journey has no stage {key!r}.",
            code="unknown_stage",
            fields={"milestone": ["Unknown stage."]},
        )
    return milestone


class AppointmentListCreate(APIView):
    """The appointments the customer attends: read them (all at once, as tasks); book
    one."""

    @extend_schema(responses={200: AppointmentSerializer(many=True)})
    def get(self, request: Request, reference: str) -> Response:
        appointments = journey_appointments(journey=_journey(request, reference))
        return Response(AppointmentSerializer(appointments, many=True).data)

    @extend_schema(request=AppointmentSerializer, responses={201: AppointmentSerializer})
    @idempotent
    def post(self, request: Request, reference: str) -> Response:
        journey = _journey(request, reference)
        serializer = AppointmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        appointment = journey_services.journey_appointment_create(
            journey=journey, **_appointment_changes(serializer, journey)
        )
        return Response(AppointmentSerializer(appointment).data, status=status.HTTP_201_CREATED)


class AppointmentDetail(APIView):
    """One appointment: read it; change it (the customer is told a new time or place,
    with a calendar file that replaces the old entry); cancel it (the customer is told,
    with a calendar file that removes it) until it starts."""

    @extend_schema(responses={200: AppointmentSerializer})
    def get(self, request: Request, reference: str, pk: int) -> Response:
        return Response(AppointmentSerializer(_appointment(request, reference, pk)).data)

    @extend_schema(request=AppointmentUpdateSerializer, responses={200: AppointmentSerializer})
    @idempotent
    def patch(self, request: Request, reference: str, pk: int) -> Response:
        appointment = _appointment(request, reference, pk)
        serializer = AppointmentUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        appointment = journey_services.journey_appointment_update(
            appointment=appointment, **_appointment_changes(serializer, appointment.journey)
        )
        return Response(AppointmentSerializer(appointment).data)

    @extend_schema(
        request=None,
        responses={
            204: None,
            409: _conflict("the appointment has started"),
        },
    )
    @idempotent
    def delete(self, request: Request, reference: str, pk: int) -> Response:
        appointment = _appointment(request, reference, pk)
        journey_services.journey_appointment_cancel(appointment=appointment)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointList(APIView):
    """This partner's webhook endpoints; creating one shows its secret once."""

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True)})
    def get(self, request: Request) -> Response:
        endpoints = WebhookEndpoint.objects.filter(partner=request.user, is_active=True)
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(request=WebhookEndpointSerializer, responses={201: WebhookSecretSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = WebhookEndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(partner=request.user, **serializer.validated_data)
        return Response(WebhookSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetail(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk, partner=request.user, is_active=True)
        endpoint.is_active = False
        endpoint.save(update_fields=["is_active"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotate(APIView):
    """A new secret; the old one keeps signing too for 24 hours."""

    @extend_schema(request=None, responses={200: WebhookSecretSerializer})
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk, partner=request.user, is_active=True)
        endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint)
        return Response(WebhookSecretSerializer(endpoint).data)


class SandboxJourneyCreate(APIView):
    """A test journey for this partner: driven like any other, it never notifies anyone."""

    @extend_schema(request=SandboxJourneyInSerializer, responses={201: JourneySerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = SandboxJourneyInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        journey = sandbox_journey_create(partner=request.user, **serializer.validated_data)
        journey = partner_journeys(partner=request.user).get(pk=journey.pk)
        return Response(JourneySerializer(journey).data, status=status.HTTP_201_CREATED)


@extend_schema(exclude=True)
class NotFoundView(APIView):
    """Any other URL under /api/: the key is checked first (401), then a JSON 404
    instead of Django's HTML page; one that lacks only its trailing slash says so."""

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not request.path.endswith("/"):
            try:
                match = resolve(request.path + "/")
            except Resolver404:
                match = None
            if match is not None and match.url_name not in ("not-found", "api-not-found"):
                raise NotFound(f"No such API endpoint. Did you mean {request.path}/ ?")
        raise NotFound("No such API endpoint.")

    get = post = put = patch = delete = _not_found
