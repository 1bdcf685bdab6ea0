"""Every kind of message Milepost sends, out of the box."""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Kind:
    label: str
    # Part of a journey (and so switchable per journey template).
    journey: bool = True
    # Urgent enough that a customer may allow it during their quiet hours.
    may_be_anytime: bool = False


KINDS: dict[str, Kind] = {
    "milestone_reached": Kind(_("A stage of your journey is reached")),
    "journey_delayed": Kind(_("Your journey is late, with the new date"), may_be_anytime=True),
    "journey_on_time": Kind(_("Your journey is back on time after a delay")),
    "journey_promise_moved": Kind(_("We changed the date we promise")),
    "photos_added": Kind(_("New photos")),
    "task_assigned": Kind(_("Something for you to do")),
    "task_due_soon": Kind(_("Something for you to do is due soon")),
    "task_overdue": Kind(_("Something for you to do is overdue")),
    "appointment_set": Kind(_("An appointment is set"), may_be_anytime=True),
    "appointment_reminder": Kind(_("Your appointment is tomorrow")),
    "appointment_changed": Kind(_("An appointment changed"), may_be_anytime=True),
    "appointment_cancelled": Kind(_("An appointment is cancelled"), may_be_anytime=True),
    "promised_item_overdue": Kind(_("Something we promised is late")),
    # The company writes in the journey's conversation: an answer, or first.
    "staff_reply": Kind(_("A message from us, or our answer to yours"), may_be_anytime=True),
    "agreement_ending": Kind(_("A contract, warranty or finance agreement ends soon")),
    "profile_change_proposed": Kind(_("A change to your details to check"), journey=False),
    "profile_filled_in": Kind(_("An empty detail of yours filled in"), journey=False),
    "share_accepted": Kind(_("Someone you invited now follows your journey"), journey=False),
    # Sent to people without an account, or to staff: not customer preferences.
    "journey_invitation": Kind(_("An invitation to follow a journey"), journey=False),
    "staff_customer_message": Kind(_("A customer wrote"), journey=False),
    "staff_reschedule_request": Kind(
        _("A customer asked for another appointment time"), journey=False
    ),
}

JOURNEY_KINDS = [key for key, kind in KINDS.items() if kind.journey]
ANYTIME_CHOICES = [(key, kind.label) for key, kind in KINDS.items() if kind.may_be_anytime]
