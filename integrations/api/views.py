from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Source
from accounts.services import profile_propose_change
from integrations.api.serializers import (
    JourneySerializer,
    ProfileChangeInSerializer,
    ProfileChangeOutSerializer,
    StatusEventInSerializer,
    StatusEventOutSerializer,
)
from integrations.selectors import partner_journeys
from integrations.services import partner_record_status_event


class JourneyList(generics.ListAPIView):
    """The journeys this partner serves, with their milestones."""

    serializer_class = JourneySerializer

    def get_queryset(self):
        return partner_journeys(partner=self.request.user)


class JourneyDetail(generics.RetrieveAPIView):
    """One journey; any journey this partner does not serve answers 404."""

    serializer_class = JourneySerializer
    lookup_field = "reference"

    def get_queryset(self):
        return partner_journeys(partner=self.request.user)


class JourneyEventCreate(APIView):
    """Post one status event for a journey."""

    @extend_schema(
        request=StatusEventInSerializer,
        responses={
            201: StatusEventOutSerializer,
            200: OpenApiResponse(StatusEventOutSerializer, description="Already received."),
            202: OpenApiResponse(StatusEventOutSerializer, description="Unmapped code: kept."),
        },
    )
    def post(self, request: Request, reference: str) -> Response:
        journey = get_object_or_404(partner_journeys(partner=request.user), reference=reference)
        serializer = StatusEventInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = partner_record_status_event(
            partner=request.user,
            journey=journey,
            event_id=data["event_id"],
            code=data["code"],
            occurred_at=data["occurred_at"],
            payload=request.data if isinstance(request.data, dict) else {},
        )
        inbound = result.inbound
        body = StatusEventOutSerializer(
            {
                "event_id": inbound.event_id,
                "journey": journey.reference,
                "code": inbound.code,
                "occurred_at": inbound.occurred_at,
                "received_at": inbound.received_at,
                "applied": result.applied,
                "duplicate": result.duplicate,
                "warnings": result.warnings,
            }
        ).data
        if result.duplicate:
            code = status.HTTP_200_OK
        elif inbound.unmapped:
            code = status.HTTP_202_ACCEPTED
        else:
            code = status.HTTP_201_CREATED
        return Response(body, status=code)


class JourneyProfileChangeCreate(APIView):
    """Propose a change to the details of the customer who owns a journey.

    A field the customer has not filled in yet is filled in directly; otherwise the
    customer is asked and decides. Nothing the customer entered is ever overwritten.
    """

    @extend_schema(request=ProfileChangeInSerializer, responses={201: ProfileChangeOutSerializer})
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
        )
        body = {"field": data["field"], "state": "applied" if proposal is None else "pending"}
        return Response(ProfileChangeOutSerializer(body).data, status=status.HTTP_201_CREATED)
