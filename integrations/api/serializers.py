from datetime import datetime

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from accounts.forms import PROPOSABLE_FIELDS
from journey.models import Journey, Milestone


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
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                raise serializers.ValidationError(
                    "Give a UTC offset, e.g. 2026-11-26T09:30:00Z.", code="naive"
                )
        return super().to_internal_value(value)


class StatusEventInSerializer(serializers.Serializer):
    event_id = serializers.CharField(
        max_length=128, help_text="Your own id for this event; unique per partner."
    )
    code = serializers.CharField(max_length=64, help_text="Your status code (see the mapping).")
    occurred_at = AwareDateTimeField(help_text="When it happened, with a UTC offset.")
    data = serializers.DictField(
        required=False, default=dict, help_text="Anything else; kept for audit, never shown."
    )


class StatusEventOutSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    journey = serializers.CharField()
    code = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    applied = serializers.BooleanField(help_text="False when the event did not move the journey.")
    duplicate = serializers.BooleanField(help_text="True when this event_id was already received.")
    warnings = serializers.ListField(child=serializers.CharField())


class ProfileChangeInSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=PROPOSABLE_FIELDS)
    value = serializers.CharField(max_length=200)
    reason = serializers.CharField(max_length=300, help_text="Shown to the customer.")


class ProfileChangeOutSerializer(serializers.Serializer):
    field = serializers.CharField()
    state = serializers.ChoiceField(
        choices=["pending", "applied"],
        help_text="applied: the field was empty and is now filled in; pending: the customer "
        "decides.",
    )
