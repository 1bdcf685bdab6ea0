import decimal
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import models
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from accounts.forms import PROPOSABLE_FIELDS
from integrations.models import WebhookEndpoint, WebhookEventType
from journey.models import (
    Appointment,
    Checkpoint,
    CustomerTask,
    Journey,
    LegMode,
    Milestone,
    Photo,
    ShipmentLeg,
)


class _StringOnly:
    """Refuses anything but a string (DRF's CharField turns 123 into "123"): ids and
    codes, where the number 123 and the string "123" must not silently be one, and text,
    where a number is a client's mistake (a reason of 5)."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StringField(_StringOnly, serializers.CharField):
    """A CharField that takes JSON strings only."""


class SlugStringField(_StringOnly, serializers.SlugField):
    """A SlugField that takes JSON strings only."""


class StringChoiceField(_StringOnly, serializers.ChoiceField):
    """A ChoiceField of string choices that takes JSON strings only: the number 5 is
    "Must be a string.", as every other text field says, not "not a valid choice"."""


class JSONBooleanField(serializers.BooleanField):
    """true or false, as JSON has them: DRF's BooleanField also takes "yes", "0" and 1."""

    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class RequestBody:
    # For a serializer that reads a request body: the body must be a JSON object. A
    # list, a string, a number or null is refused naming ``body``, where DRF would say
    # "Invalid data. Expected a dictionary" under ``non_field_errors``. Only the body
    # itself (the serializer at the top, no parent): a nested one is a field's value.
    # (Comments, not a docstring: the schema would show it as each body's description.)

    # A model's text fields take JSON strings only, as the declared ones do: a number
    # is not silently a title, a reason or a carrier's name.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StringField,
        models.TextField: StringField,
    }
    serializer_choice_field = StringChoiceField
    # A key the body has no field for, or one it only reads back (a leg's sequence on
    # PATCH, a task's done_at), is refused by name: DRF would drop it, and the client
    # would believe it was set. An event keeps any other keys as sent (for audit).
    unknown_keys_kept = False
    # What a value that is not an object is named in the error: the body, or (a batch's
    # item, validated alone) the item at the result's index.
    object_name = "body"

    def run_validation(self, data: Any = empty) -> Any:
        if self.parent is None and not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {self.object_name: ["Expected a JSON object."]}, code="not_an_object"
            )
        if self.parent is None and not self.unknown_keys_kept:
            unknown = {
                key: ["Read back only: it cannot be set."]
                if key in self.fields
                else ["Not a field of this request."]
                for key in data
                if key not in self.fields or self.fields[key].read_only
            }
            if unknown:
                # With what else is wrong ("evts" sent for "events": that it is missing).
                try:
                    super().run_validation(data)
                except serializers.ValidationError as error:
                    if isinstance(error.detail, dict):
                        unknown = {**error.detail, **unknown}
                raise serializers.ValidationError(unknown, code="unknown_field")
        return super().run_validation(data)


class MilestoneSerializer(serializers.ModelSerializer):
    stage = serializers.CharField(source="stage.key")
    label = serializers.CharField(source="stage.label")

    class Meta:
        model = Milestone
        fields = ["stage", "label", "position", "state", "planned_date", "reached_at"]


class JourneySerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template.key")
    milestones = MilestoneSerializer(many=True)

    class Meta:
        model = Journey
        fields = [
            "reference",
            "title",
            "template",
            "started_at",
            "promised_date",
            "eta",
            "health",
            "last_event_at",
            "milestones",
        ]


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time that must carry its UTC offset: a partner's local time without
    one is ambiguous, so it is refused rather than guessed."""

    def to_internal_value(self, value: object) -> datetime:
        if isinstance(value, str):
            # RFC 3339 allows a lower-case "t" and "z"; ISO 8601's only letters are those.
            value = value.upper()
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                raise serializers.ValidationError(
                    "Give a UTC offset, e.g. 2026-11-26T09:30:00Z.", code="naive"
                )
        return super().to_internal_value(value)


# Control characters, and the invisible ones an id could hide: zero-width spaces and
# joiners, directional marks, line and paragraph separators, the byte order mark.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def _exact(value: str) -> None:
    """An id or a code is taken exactly as sent (never trimmed), so nothing in it may be
    unseen: no control character (a newline, a tab) and no space at either end."""
    if _CONTROL.search(value):
        raise serializers.ValidationError(
            "No control or invisible characters (a newline, a tab, a zero-width space).",
            code="control_character",
        )
    if value != value.strip():
        raise serializers.ValidationError("No spaces at either end.", code="surrounding_space")


def _readable_back(event_id: str) -> None:
    """An event is read back at .../events/<event_id>/ (slashes and all): an id with a
    part ``.`` or ``..`` between its slashes could not be, as clients fold those away."""
    if any(part in (".", "..") for part in event_id.split("/")):
        raise serializers.ValidationError(
            "Not usable in a URL path: no part may be '.' or '..'.", code="invalid"
        )


class StatusEventInSerializer(RequestBody, serializers.Serializer):
    unknown_keys_kept = True
    event_id = StringField(
        max_length=128,
        trim_whitespace=False,
        validators=[_exact, _readable_back],
        help_text="Your own id for this event; unique per partner.",
    )
    code = StringField(
        max_length=64,
        trim_whitespace=False,
        validators=[_exact],
        help_text="Your status code (see the mapping).",
    )
    occurred_at = AwareDateTimeField(help_text="When it happened, with a UTC offset.")
    data = serializers.DictField(
        required=False, default=dict, help_text="Anything else; kept for audit, never shown."
    )

    def validate(self, attrs: dict[str, object]) -> dict[str, object]:
        # The whole body is kept as sent; PostgreSQL cannot store a NUL character in it.
        if _has_nul(self.initial_data):
            raise serializers.ValidationError({"data": ["NUL characters are not allowed."]})
        return attrs


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class EventErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.JSONField())


class StatusEventOutSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    journey = serializers.CharField()
    code = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    applied = serializers.BooleanField(help_text="False when the event did not move the journey.")
    duplicate = serializers.BooleanField(help_text="True when this event_id was already received.")
    state = serializers.ChoiceField(
        choices=["applied", "logged", "unmapped", "queued", "rejected"],
        help_text=(
            "applied: it moved the journey; logged: kept in the timeline, older than the "
            "journey's state; unmapped: its code is not mapped yet, kept for staff; queued: "
            "accepted with Prefer: respond-async, not applied yet; rejected: a queued event "
            "that could not be applied (see error)."
        ),
    )
    error = EventErrorSerializer(
        allow_null=True, help_text="Why a queued event was rejected; null otherwise."
    )
    warnings = serializers.ListField(child=serializers.CharField())


class ProfileChangeInSerializer(RequestBody, serializers.Serializer):
    field = StringChoiceField(choices=PROPOSABLE_FIELDS)
    # A string, as the customer's form has it: the number 7911123456 is not read as a
    # phone number (nor a leading zero lost on the way).
    value = StringField(max_length=200)
    reason = StringField(max_length=300, help_text="Shown to the customer.")


class ProfileChangeOutSerializer(serializers.Serializer):
    field = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["pending", "applied"],
        help_text="applied: the field was empty and is now filled in; pending: the customer "
        "decides.",
    )


MAX_BATCH = 500


class BatchEventInSerializer(StatusEventInSerializer):
    object_name = "item"
    # Taken exactly, as the id and the code: the view looks journeys up by it as sent.
    journey = StringField(
        max_length=16,
        trim_whitespace=False,
        validators=[_exact],
        help_text="The journey's reference.",
    )


class _BatchItem(serializers.DictField):
    """An object in the schema, and taken as it is: the view validates each item alone,
    so an item that is not an object (``5``, ``null``) fails alone, as the single-event
    endpoint would answer it, not the whole batch."""

    def to_internal_value(self, data: object) -> object:
        return data


class BatchInSerializer(RequestBody, serializers.Serializer):
    # Items are validated one by one in the view, so one bad item fails alone.
    events = serializers.ListField(
        child=_BatchItem(allow_null=True),
        min_length=1,
        max_length=MAX_BATCH,
        help_text=f"Up to {MAX_BATCH} events, each like a single event plus `journey`.",
    )


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="What the single-event endpoint would answer.")
    event = StatusEventOutSerializer(allow_null=True)
    error = EventErrorSerializer(allow_null=True)


class BatchOutSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True)


@extend_schema_field(
    {
        "oneOf": [{"type": "number"}, {"type": "string", "format": "decimal"}],
        "description": "Degrees; more than 5 decimals are rounded to 5.",
    }
)
class CoordinateField(serializers.DecimalField):
    """Degrees, kept to 5 decimals (about a metre): a GPS fix's 39.469912, or a float's
    0.30000000000000004, is rounded to them, not refused. A number too large for any
    coordinate is still refused by its digits, then by its range."""

    def validate_precision(self, value: decimal.Decimal) -> decimal.Decimal:
        try:
            value = self.quantize(value)
        except decimal.InvalidOperation:
            pass  # more whole digits than a coordinate has: refused as such below
        else:
            value = value.copy_abs() if value.is_zero() else value  # not "-0.00000"
        return super().validate_precision(value)


def _coordinate(limit: int, **kwargs: object) -> serializers.DecimalField:
    return CoordinateField(
        max_digits=8,
        decimal_places=5,
        min_value=-limit,
        max_value=limit,
        rounding=decimal.ROUND_HALF_EVEN,
        **kwargs,
    )


class LegSerializer(RequestBody, serializers.Serializer):
    sequence = serializers.IntegerField(min_value=1, max_value=999)
    mode = StringChoiceField(choices=LegMode.choices)
    carrier = StringField(max_length=120, required=False, allow_blank=True)
    origin_name = StringField(max_length=120)
    origin_lat = _coordinate(90)
    origin_lon = _coordinate(180)
    destination_name = StringField(max_length=120)
    destination_lat = _coordinate(90)
    destination_lon = _coordinate(180)
    departed_at = AwareDateTimeField(required=False, allow_null=True)
    arrived_at = AwareDateTimeField(required=False, allow_null=True)
    eta = AwareDateTimeField(required=False, allow_null=True)


class LegUpdateSerializer(LegSerializer):
    sequence = None  # a leg's sequence is its address, not changed by an update


class LegOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = ShipmentLeg
        fields = [
            "sequence",
            "mode",
            "carrier",
            "origin_name",
            "origin_lat",
            "origin_lon",
            "destination_name",
            "destination_lat",
            "destination_lon",
            "departed_at",
            "arrived_at",
            "eta",
        ]


class CheckpointSerializer(RequestBody, serializers.ModelSerializer):
    occurred_at = AwareDateTimeField()
    lat = _coordinate(90, required=False, allow_null=True)
    lon = _coordinate(180, required=False, allow_null=True)

    class Meta:
        model = Checkpoint
        fields = ["id", "occurred_at", "location_name", "lat", "lon", "description"]
        read_only_fields = ["id"]


class TaskSerializer(RequestBody, serializers.ModelSerializer):
    class Meta:
        model = CustomerTask
        fields = ["id", "title", "description", "due_date", "done_at", "created_at"]
        read_only_fields = ["id", "done_at", "created_at"]
        # A few sentences on the customer's page, as a message is at most 4,000.
        extra_kwargs = {"description": {"max_length": 2000}}


@extend_schema_field(OpenApiTypes.STR)
class StageKeyField(StringField):
    """An appointment's stage, by its key (as a photo's milestone): the view finds the
    journey's milestone; the answer gives the key back, or null."""

    def to_representation(self, value: Any) -> str | None:
        return value.stage.key if value is not None else None


class AppointmentSerializer(RequestBody, serializers.ModelSerializer):
    starts_at = AwareDateTimeField()
    arrive_at = AwareDateTimeField(required=False, help_text="Defaults to starts_at.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, default=60)
    time_zone = StringField(
        max_length=64,
        required=False,
        help_text="The place's time zone (IANA); defaults to the customer's own.",
    )
    visit = JSONBooleanField(
        default=False,
        help_text="true when we go to the customer (an engineer, a delivery): they are "
        "told when we will be with them and what to have ready, not when to arrive and "
        "what to bring.",
    )
    milestone = StageKeyField(
        max_length=50,
        required=False,
        allow_null=True,
        help_text="The stage key it is booked for (a handover, an installation): the "
        "customer's page then says that stage is booked for this day. null: none.",
    )

    class Meta:
        model = Appointment
        fields = [
            "id",
            "title",
            "starts_at",
            "arrive_at",
            "duration_minutes",
            "place_name",
            "address",
            "time_zone",
            "what_to_bring",
            "visit",
            "milestone",
        ]
        read_only_fields = ["id"]

    def to_representation(self, instance: Appointment) -> dict[str, object]:
        instance.duration_minutes = int(instance.duration.total_seconds() // 60)
        return super().to_representation(instance)


class AppointmentUpdateSerializer(AppointmentSerializer):
    # A PATCH sets what it sends; nothing it leaves out takes a default.
    arrive_at = AwareDateTimeField(
        required=False,
        help_text="Left out while starts_at changes: it moves with the start (as long before "
        "it as it was).",
    )
    duration_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
    time_zone = StringField(
        max_length=64, required=False, help_text="The place's time zone (IANA)."
    )
    visit = JSONBooleanField(required=False, help_text="See the appointment's visit.")


@extend_schema_field(OpenApiTypes.BINARY)
class _UploadField(serializers.FileField):
    """A file part of a multipart form: binary in the schema, not a URL."""


class PhotoInSerializer(serializers.Serializer):
    """A multipart form with one photo: each part once, and no other part."""

    # Each part once: DRF would keep one of two ``file`` parts and say nothing of the
    # other.
    file = _UploadField(help_text="JPEG, PNG or WebP; at most 20 MB and 50 megapixels.")
    milestone = serializers.CharField(
        max_length=50, required=False, help_text="The stage key of the milestone it shows."
    )
    caption = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if hasattr(data, "getlist"):
            repeated = {
                name: ["Send one file per request." if name == "file" else "Send it once."]
                for name in self.fields
                if len(data.getlist(name)) > 1
            }
            # Any other part would be dropped unread: a file under another name ("file2",
            # "photo"), or one sent without a filename, which arrives as text.
            stray = {
                name: ["One photo per request, in the part named file."]
                if any(isinstance(value, UploadedFile) for value in data.getlist(name))
                else ["Unknown part: send file, milestone and caption only."]
                for name in data
                if name not in self.fields
            }
            if repeated or stray:
                raise serializers.ValidationError({**repeated, **stray}, code="repeated")
        return super().to_internal_value(data)


class PhotoOutSerializer(serializers.ModelSerializer):
    milestone = serializers.CharField(source="milestone.stage.key", allow_null=True)
    thumbnail_ready = serializers.SerializerMethodField()

    class Meta:
        model = Photo
        fields = ["id", "milestone", "caption", "width", "height", "created_at", "thumbnail_ready"]

    def get_thumbnail_ready(self, photo: Photo) -> bool:
        return bool(photo.thumbnail)


class WebhookEndpointSerializer(RequestBody, serializers.ModelSerializer):
    event_types = serializers.ListField(
        child=StringChoiceField(choices=WebhookEventType.choices), min_length=1
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "event_types", "is_active", "created_at"]
        read_only_fields = ["id", "is_active", "created_at"]


class WebhookSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="whsec_…: shown only when created or rotated."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class SandboxJourneyInSerializer(RequestBody, serializers.Serializer):
    template = SlugStringField(help_text="The key of a journey template.")
    title = StringField(max_length=200, required=False, default="Sandbox journey")
