import unicodedata
from importlib.resources import files

import phonenumbers
from django import forms
from django.conf import settings
from django.utils.translation import get_language_info
from django.utils.translation import gettext_lazy as _

from accounts.models import Address, CustomerProfile, known_time_zones, label_taken
from notifications.kinds import KINDS

# The profile's sections, each edited in place on its own.
SECTIONS: dict[str, list[str]] = {
    "personal": ["given_name", "family_name"],
    "contact": ["phone"],
    "preferences": ["language", "time_zone", "timeline_newest_first"],
    # Web push (`channel_push`) is not offered: the portal does not register browsers for
    # it yet (docs/notifications.md), so choosing it would reach no one. The field and
    # what customers chose before are kept for when it is built.
    "notifications": [
        "channel_email",
        "channel_sms",
        "quiet_hours_start",
        "quiet_hours_end",
        "anytime_kinds",
    ],
}
# Fields staff and partners may propose a change to (the customer confirms it).
PROPOSABLE_FIELDS = ["given_name", "family_name", "phone", "language", "time_zone"]
DEFAULT_PHONE_REGION = "GB"


def normalise_phone(value: str) -> str:
    """A phone number in E.164 (+447700900123), or a ValidationError naming the problem."""
    value = value.strip()
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException as error:
        raise forms.ValidationError(
            _("This is not a phone number. Include the country code, e.g. +44 7911 123456.")
        ) from error
    if not phonenumbers.is_valid_number(number):
        raise forms.ValidationError(
            _("This phone number is not valid. Include the country code, e.g. +44 7911 123456.")
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# zone.tab's regions, in the reader's words (the places under them keep the database's
# English names: "Mexico City", as a zone is usually written).
REGION_NAMES = {
    "Africa": _("Africa"),
    "America": _("America"),
    "Antarctica": _("Antarctica"),
    "Arctic": _("Arctic"),
    "Asia": _("Asia"),
    "Atlantic": _("Atlantic Ocean"),
    "Australia": _("Australia"),
    "Europe": _("Europe"),
    "Indian": _("Indian Ocean"),
    "Pacific": _("Pacific Ocean"),
}


def _zone_choices() -> list[tuple[object, list[tuple[str, str]]] | tuple[str, str]]:
    """The time zones a customer picks from: the IANA database's own (zone.tab, one per
    place: about 400), grouped by region, "Madrid" under "Europe"; not its 200 old names
    and aliases ("Africa/Asmera", "GB", "US/Eastern"), which any stored value may still
    be (``ProfileForm`` offers a customer's own)."""
    table = files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    zones = sorted(
        line.split("\t")[2] for line in table.splitlines() if line and not line.startswith("#")
    )
    regions: dict[str, list[tuple[str, str]]] = {}
    for zone in zones:
        region, _sep, place = zone.partition("/")
        regions.setdefault(region, []).append((zone, _place_name(place)))
    return [
        ("UTC", "UTC"),
        *((REGION_NAMES.get(region, region), places) for region, places in regions.items()),
    ]


def zone_label(zone: str) -> str:
    """A zone as the picker names it, with its region: "Madrid (Europe)", "Madrid
    (Europa)", not "Europe/Madrid"; "UTC" and names outside a region as they are."""
    region, _sep, place = zone.partition("/")
    if not place or region not in REGION_NAMES:
        return zone
    return f"{_place_name(place)} ({REGION_NAMES[region]})"


def _place_name(place: str) -> str:
    """ "Argentina/Buenos_Aires" as people write it: "Argentina, Buenos Aires"."""
    return place.replace("_", " ").replace("/", ", ")


ZONE_CHOICES = _zone_choices()
LISTED_ZONES = {"UTC"} | {zone for _r, group in ZONE_CHOICES[1:] for zone, _p in group}


def _unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def zone_choices() -> list[tuple[object, object]]:
    """The zones' regions in the reader's alphabetical order ("Océano Atlántico" among the
    O's in Spanish, "Atlantic Ocean" among the A's in English), UTC first: made as the
    form is drawn, in the active language."""
    return [
        ZONE_CHOICES[0],
        *sorted(ZONE_CHOICES[1:], key=lambda group: _unaccented(str(group[0])).casefold()),
    ]


class ZoneField(forms.ChoiceField):
    """Offers the listed zones; takes any the database knows (a partner's proposal of
    "US/Eastern", a value stored before the list was cut)."""

    def valid_value(self, value: object) -> bool:
        return isinstance(value, str) and value in known_time_zones()


class ProfileForm(forms.ModelForm):
    """Every editable profile field, validated in one place (also for proposals)."""

    time_zone = ZoneField(label=_("Time zone"), choices=zone_choices)
    # The urgent kinds (notifications.kinds: may_be_anytime), in their order there.
    anytime_kinds = forms.MultipleChoiceField(
        label=_("Allowed during quiet hours"),
        choices=[(key, kind.label) for key, kind in KINDS.items() if kind.may_be_anytime],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("These still reach you at once when your quiet hours have begun."),
    )
    # Each language in its own words: a reader of Spanish looks for "español".
    language = forms.ChoiceField(
        label=_("Language"),
        choices=[(code, get_language_info(code)["name_local"]) for code, _n in settings.LANGUAGES],
    )

    class Meta:
        model = CustomerProfile
        fields = [name for fields in SECTIONS.values() for name in fields]
        widgets = {
            "quiet_hours_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_hours_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Optional on the record (an account starts without one), but once the customer
        # or a proposal sets it, not blank: every message greets them by it.
        given_name = self.fields["given_name"]
        given_name.required = True
        given_name.error_messages["required"] = _("Tell us what to call you.")
        # A zone not listed (an old name) is offered as it is: else the list would show,
        # and a save would quietly store, the first zone instead.
        current = self.initial.get("time_zone")
        if current and current not in LISTED_ZONES:
            self.fields["time_zone"].choices = [(current, current), *zone_choices()]

    def clean_anytime_kinds(self) -> list[str]:
        chosen = set(self.cleaned_data.get("anytime_kinds") or [])
        return [key for key in KINDS if key in chosen]

    def clean_given_name(self) -> str:
        value = self.cleaned_data.get("given_name", "")
        # A letter or a digit at least: a zero-width space is no name to greet anyone by.
        if not any(unicodedata.category(char)[0] in "LN" for char in value):
            raise forms.ValidationError(_("Tell us what to call you."))
        return value

    def clean_phone(self) -> str:
        return normalise_phone(self.cleaned_data.get("phone", ""))

    def clean(self) -> dict[str, object]:
        data = super().clean()
        start, end = data.get("quiet_hours_start"), data.get("quiet_hours_end")
        # One end without the other is the model's constraint to say (once; not when an
        # end was refused as a time already).
        if start is not None and start == end:
            self.add_error("quiet_hours_end", _("Quiet hours must end at another time."))
        channels = ("channel_email", "channel_sms", "channel_push")
        if any(name in data for name in channels) and not any(data.get(n) for n in channels):
            raise forms.ValidationError(_("Keep at least one way for us to reach you."))
        if data.get("channel_sms") and not (data.get("phone") or self.instance.phone):
            self.add_error("channel_sms", _("Add a phone number first to get text messages."))
        return data


def section_form(section: str, *, instance: CustomerProfile, data: object = None) -> ProfileForm:
    """The profile form limited to one section's fields."""
    form = ProfileForm(data=data, instance=instance, prefix=section)
    form.fields = {name: form.fields[name] for name in SECTIONS[section]}
    return form


class AddressForm(forms.ModelForm):
    # Not the model's max_length as the input's maxlength: a browser cuts "United
    # Kingdom" to "Un" without a word. Whatever is typed reaches clean_country.
    country = forms.CharField(
        label=_("Country"),
        initial="GB",
        help_text=_("Its two-letter code, e.g. GB or ES."),
    )

    class Meta:
        model = Address
        fields = ["label", "line1", "line2", "city", "postcode", "country"]

    def __init__(self, *args: object, profile: CustomerProfile | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.profile = profile

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        taken = label_taken(self.profile, label) if self.profile else None
        if taken is not None:
            raise forms.ValidationError(
                _("You have an address called “%(label)s” already: give this one another label."),
                code="duplicate_label",
                params={"label": taken},
            )
        return label

    def clean_country(self) -> str:
        value = self.cleaned_data["country"].strip().upper()
        # ISO 3166 codes, as phonenumbers knows them (every country with a phone plan).
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise forms.ValidationError(_("Use the two-letter country code, e.g. GB or ES."))
        return value


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("Their email address"))


class ShareLinkForm(forms.Form):
    days = forms.TypedChoiceField(
        label=_("Valid for"),
        coerce=int,
        choices=[(1, _("1 day")), (7, _("7 days")), (30, _("30 days"))],
        initial=7,
    )


class ProposalForm(forms.Form):
    """Staff propose a change in the admin."""

    field = forms.ChoiceField(choices=[(f, f.replace("_", " ")) for f in PROPOSABLE_FIELDS])
    value = forms.CharField(
        max_length=200,
        help_text="For the language, its code or its name: "
        + ", ".join(
            f"{code} ({get_language_info(code)['name']})" for code, _n in settings.LANGUAGES
        )
        + ". For the time zone, a name such as Europe/London.",
    )
    reason = forms.CharField(max_length=300)

    def clean(self) -> dict:
        """A language named as staff would name it ("English", "español") is its code."""
        data = super().clean()
        if data.get("field") == "language" and data.get("value"):
            named = data["value"].strip().casefold()
            for code, _name in settings.LANGUAGES:
                info = get_language_info(code)
                if named in {code, info["name"].casefold(), info["name_local"].casefold()}:
                    data["value"] = code
        return data


class DeleteAccountForm(forms.Form):
    confirm_email = forms.EmailField(label=_("Type your email address to confirm"))

    def __init__(self, *args: object, user: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_confirm_email(self) -> str:
        value = self.cleaned_data["confirm_email"].strip().lower()
        if value != self.user.email:
            raise forms.ValidationError(_("That is not the email address of this account."))
        return value
