"""The profile page: edited in place, with clear errors and nothing half-saved."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.urls import reverse

from accounts import services
from accounts.models import Address, ChangeProposal, ProfileChange, Source
from accounts.services import profile_propose_change, proposal_decide
from journey.errors import ApplicationError
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, customer):
    client.force_login(customer)
    return client


def section_url(section: str) -> str:
    return reverse("accounts:section", args=[section])


def test_the_profile_page_shows_the_customers_details(logged_in, customer):
    response = logged_in.get(reverse("accounts:profile"))
    assert response.status_code == 200
    html = response.content.decode()
    assert customer.profile.given_name in html and customer.email in html
    # The zone as its picker names it, and the section named for both its facts (a
    # walk-through read "Europe/Madrid" beside a picker saying "Madrid", and its email
    # under "Phone").
    customer.profile.time_zone = "America/Argentina/Buenos_Aires"
    customer.profile.save()
    html = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "<dd>Argentina, Buenos Aires (America)</dd>" in html
    assert ">Phone and email</h2>" in html
    customer.profile.language = "es"
    customer.profile.time_zone = "UTC"
    customer.profile.save()
    html = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "<dd>UTC</dd>" in html


def test_a_section_is_edited_in_place_with_htmx(logged_in, customer):
    form = logged_in.get(section_url("contact") + "?edit=1", headers={"HX-Request": "true"})
    assert form.status_code == 200
    assert 'name="contact-phone"' in form.content.decode()
    assert "<html" not in form.content.decode()  # the partial only

    saved = logged_in.post(
        section_url("contact"), {"contact-phone": "07911 123456"}, headers={"HX-Request": "true"}
    )
    assert saved.status_code == 200
    assert "+447911123456" in saved.content.decode()
    customer.profile.refresh_from_db()
    assert customer.profile.phone == "+447911123456"
    change = ProfileChange.objects.get()
    assert (change.field, change.source) == ("phone", Source.CUSTOMER)


def test_without_javascript_the_form_posts_and_redirects(logged_in, customer):
    response = logged_in.post(
        section_url("preferences"),
        {"preferences-language": "es", "preferences-time_zone": "Europe/Madrid"},
    )
    assert response.status_code == 302
    customer.profile.refresh_from_db()
    assert (customer.profile.language, customer.profile.time_zone) == ("es", "Europe/Madrid")
    assert customer.profile.timeline_newest_first is False


def test_a_new_language_loads_the_whole_page_again_in_it(logged_in, customer):
    """The section alone would be swapped in Spanish under an English menu."""
    response = logged_in.post(
        section_url("preferences"),
        {"preferences-language": "es", "preferences-time_zone": "Europe/London"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response["HX-Refresh"] == "true"
    page = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "Guardado." in page and 'lang="es"' in page
    # Another preference: the section is swapped in place, as before.
    response = logged_in.post(
        section_url("preferences"),
        {"preferences-language": "es", "preferences-time_zone": "Europe/Madrid"},
        headers={"HX-Request": "true"},
    )
    assert "HX-Refresh" not in response
    assert 'id="section-preferences"' in response.content.decode()


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            {"notifications-channel_email": "on", "notifications-quiet_hours_start": "08:00"},
            ["Give both ends of your quiet hours, or neither."],
        ),
        (
            {
                "notifications-channel_email": "on",
                "notifications-quiet_hours_start": "22:00",
                "notifications-quiet_hours_end": "25:00",
            },
            ["Enter a valid time."],
        ),
    ],
)
def test_quiet_hours_errors_say_each_problem_once(logged_in, data, errors):
    """One end without the other is said once, in words (the model's constraint, not
    also its name); an end that is not a time is only that."""
    response = logged_in.post(section_url("notifications"), data, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.content.decode()
    for message in ("Give both ends of your quiet hours, or neither.", "Enter a valid time."):
        assert html.count(message) == errors.count(message), message
    assert "Constraint" not in response.content.decode()


@pytest.mark.parametrize(
    ("section", "data", "message"),
    [
        ("contact", {"contact-phone": "12"}, "not valid"),
        (
            "preferences",
            {"preferences-language": "xx", "preferences-time_zone": "Europe/Paris"},
            "Select a valid choice",
        ),
        (
            "preferences",
            {"preferences-language": "en", "preferences-time_zone": "Nowhere/City"},
            "Select a valid choice",
        ),
        (
            "personal",
            {"personal-given_name": "x" * 101, "personal-family_name": "y"},
            "at most 100 characters",
        ),
        (
            "personal",
            {"personal-given_name": "   ", "personal-family_name": "Murphy"},
            "Tell us what to call you",
        ),
        (
            "personal",
            {"personal-given_name": "\u200b", "personal-family_name": "Murphy"},
            "Tell us what to call you",
        ),
        (
            "notifications",
            {"notifications-channel_email": "", "notifications-quiet_hours_start": "22:00"},
            "Give both ends of your quiet hours",
        ),
        (
            "notifications",
            {"notifications-quiet_hours_start": "22:00", "notifications-quiet_hours_end": "07:00"},
            "Keep at least one way",
        ),
        ("notifications", {"notifications-channel_sms": "on"}, "Add a phone number first"),
    ],
)
def test_bad_input_gets_a_form_error_and_nothing_is_saved(
    logged_in, customer, section, data, message
):
    before = {f.name: getattr(customer.profile, f.name) for f in customer.profile._meta.fields}
    response = logged_in.post(section_url(section), data, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert message in response.content.decode()
    customer.profile.refresh_from_db()
    assert {
        f.name: getattr(customer.profile, f.name) for f in customer.profile._meta.fields
    } == before
    assert ProfileChange.objects.count() == 0


def test_addresses_are_added_and_removed_with_an_audit(logged_in, customer):
    response = logged_in.post(
        reverse("accounts:address-add"),
        {
            "label": "Home",
            "line1": "1 High St",
            "city": "Bristol",
            "postcode": "BS1 1AA",
            "country": "gb",
        },
    )
    assert response.status_code == 302
    address = Address.objects.get()
    assert address.country == "GB"
    bad = logged_in.post(reverse("accounts:address-add"), {"label": "Work", "country": "G1"})
    assert bad.status_code == 422
    assert "This field is required" in bad.content.decode()
    assert "two-letter country code" in bad.content.decode()
    # A name, or two letters that are no country: refused, never cut to fit.
    for country in ("United Kingdom", "UN", "ZZ"):
        bad = logged_in.post(
            reverse("accounts:address-add"),
            {"label": "Work", "line1": "2 Low St", "city": "Bath", "country": country},
        )
        assert bad.status_code == 422
        assert "two-letter country code" in bad.content.decode()
    assert Address.objects.count() == 1
    logged_in.post(reverse("accounts:address-remove", args=[address.pk]))
    assert Address.objects.count() == 0
    assert list(ProfileChange.objects.values_list("field", "new_value").order_by("id")) == [
        ("address", "1 High St, Bristol, BS1 1AA"),
        ("address", ""),
    ]


def test_a_label_names_one_address_whatever_its_case(logged_in, customer):
    """ "Deliver to Home" must say which: a second "home" is a form error, nothing saved."""
    data = {"label": "Home", "line1": "1 High St", "city": "Bristol", "country": "GB"}
    assert logged_in.post(reverse("accounts:address-add"), data).status_code == 302
    again = logged_in.post(reverse("accounts:address-add"), data | {"label": " home "})
    assert again.status_code == 422
    # Named as the customer wrote the one they have.
    assert "You have an address called “Home” already" in again.content.decode()
    assert Address.objects.count() == 1 and ProfileChange.objects.count() == 1
    # Another customer's "Home" is theirs.
    other = UserFactory()
    services.address_add(profile=other.profile, data=data, actor=other)
    assert Address.objects.count() == 2


def test_a_label_taken_between_the_check_and_the_write_is_refused_whole(customer):
    """Two tabs adding "Home" at once: the constraint refuses the second, audit and all."""
    data = {"label": "Home", "line1": "1 High St", "city": "Bristol", "country": "GB"}
    services.address_add(profile=customer.profile, data=data, actor=customer)
    with pytest.raises(ApplicationError) as refused:
        services.address_add(
            profile=customer.profile, data=data | {"label": "HOME"}, actor=customer
        )
    assert refused.value.code == "duplicate_label" and "label" in refused.value.fields
    assert Address.objects.count() == 1 and ProfileChange.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # SQLite edits a schema outside a transaction
def test_the_migration_numbers_labels_that_were_shared(client, customer):
    migration = importlib.import_module("accounts.migrations.0006_address_label_unique")
    other = UserFactory()
    with connection.schema_editor() as editor:  # as before the constraint
        editor.remove_constraint(Address, Address._meta.constraints[0])
    for profile, label in [
        (customer.profile, "Home"),
        (customer.profile, "home"),
        (customer.profile, "Home (2)"),
        (customer.profile, "HOME"),
        (customer.profile, "Work"),
        (other.profile, "Home"),
    ]:
        Address.objects.create(profile=profile, label=label, line1="l", city="c")
    migration.relabel_duplicates(django_apps, None)
    with connection.schema_editor() as editor:
        editor.add_constraint(Address, Address._meta.constraints[0])
    assert list(Address.objects.order_by("id").values_list("label", flat=True)) == [
        "Home",
        "home (3)",
        "Home (2)",
        "HOME (4)",
        "Work",
        "Home",
    ]
    # Each renaming is in the customer's history, in their words.
    renamed = ProfileChange.objects.filter(user=customer).order_by("id")
    assert [(c.field, c.old_value, c.new_value, c.source) for c in renamed] == [
        ("address_label", "home", "home (3)", "system"),
        ("address_label", "HOME", "HOME (4)", "system"),
    ]
    assert not ProfileChange.objects.filter(user=other).exists()
    client.force_login(customer)
    history = client.get(reverse("accounts:history")).content.decode()
    assert 'data-label="What">Address label</td>' in history
    assert "Two of your addresses had this label: this one was numbered." in history


def test_another_customers_address_and_proposal_answer_404(logged_in, customer):
    other = UserFactory(profile__given_name="Alex")  # pinned: never equal to the proposal
    address = Address.objects.create(profile=other.profile, label="x", line1="l", city="c")
    proposal = profile_propose_change(
        user=other, field="given_name", value="Zed", reason="r", source=Source.STAFF
    )
    assert logged_in.post(reverse("accounts:address-remove", args=[address.pk])).status_code == 404
    url = reverse("accounts:proposal-decide", args=[proposal.pk, "accept"])
    assert logged_in.post(url).status_code == 404
    assert Address.objects.filter(pk=address.pk).exists()
    proposal.refresh_from_db()
    assert proposal.state == "pending"


def test_the_customer_accepts_a_proposal_in_the_portal(logged_in, customer):
    proposal = profile_propose_change(
        user=customer,
        field="family_name",
        value="Morgan-Lee",
        reason="Married",
        source=Source.STAFF,
    )
    page = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "Morgan-Lee" in page and "Married" in page
    response = logged_in.post(reverse("accounts:proposal-decide", args=[proposal.pk, "accept"]))
    assert response.status_code == 302
    customer.profile.refresh_from_db()
    assert customer.profile.family_name == "Morgan-Lee"
    assert ChangeProposal.objects.get().state == "accepted"


def test_the_history_page_lists_every_change(logged_in, customer):
    profile_propose_change(
        user=customer,
        field="phone",
        value="+447911123456",
        reason="r",
        source=Source.PARTNER,
        actor_name="Iberia Motor Works",
    )
    html = logged_in.get(reverse("accounts:history")).content.decode()
    assert "+447911123456" in html and "A partner" in html and "Iberia Motor Works" in html


def test_fields_are_named_in_words_in_proposals_and_the_history(logged_in, customer):
    customer.profile.given_name, customer.profile.quiet_hours_end = "Alex", None
    customer.profile.save()
    profile_propose_change(
        user=customer, field="given_name", value="Alexandra", reason="r", source=Source.STAFF
    )
    ProfileChange.objects.create(
        user=customer, field="quiet_hours_end", old_value="", new_value="07:00", source="customer"
    )
    profile = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "<strong>Given name</strong>: “Alexandra”" in profile
    # Who proposed it is the middle of a sentence: "our staff", not the label "Our staff".
    assert "(proposed by our staff)" in profile
    history = logged_in.get(reverse("accounts:history")).content.decode()
    assert 'data-label="What">Quiet until</td>' in history
    assert "Given_name" not in profile and "Quiet_hours_end" not in history
    customer.profile.language = "es"
    customer.profile.save()
    history = logged_in.get(reverse("accounts:history")).content.decode()
    assert ">Silencio hasta</td>" in history
    # The proposed value is quoted as Spanish quotes it.
    profile = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "<strong>Nombre</strong>: «Alexandra»" in profile
    assert "(propuesto por nuestro equipo)" in profile


def test_a_partners_proposal_names_it_and_one_without_a_name_says_a_partner(logged_in, customer):
    customer.profile.given_name, customer.profile.family_name = "Alex", "Morgan"
    customer.profile.save()
    profile_propose_change(
        user=customer, field="family_name", value="Morgan-Lee", reason="r", source=Source.PARTNER
    )
    profile_propose_change(
        user=customer,
        field="given_name",
        value="Alexandra",
        reason="r",
        source=Source.PARTNER,
        actor_name="Iberia Motor Works",
    )
    profile = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "(proposed by a partner)" in profile
    assert "(proposed by Iberia Motor Works)" in profile


def test_the_history_shows_values_and_its_own_notes_in_the_readers_words(logged_in, customer):
    """A customer's review read "Idioma: en → es", "no → yes" and an English note in a
    Spanish history."""
    profile_propose_change(
        user=customer, field="language", value="es", reason="The order form", source=Source.STAFF
    )
    proposal_decide(proposal=ChangeProposal.objects.get(), user=customer, accept=True)
    ProfileChange.objects.create(
        user=customer, field="channel_sms", old_value="no", new_value="yes", source="customer"
    )
    ProfileChange.objects.create(
        user=customer,
        field="timeline_newest_first",
        old_value="yes",
        new_value="no",
        source="customer",
    )
    history = logged_in.get(reverse("accounts:history")).content.decode()
    assert ">English</td>" in history and ">Español</td>" in history
    assert ">No</td>" in history and ">Sí</td>" in history
    assert "Aceptó una propuesta de nuestro equipo: The order form" in history
    assert ">en</td>" not in history and ">yes</td>" not in history and ">no</td>" not in history


def test_languages_are_offered_each_in_its_own_words():
    from accounts.forms import ProfileForm

    assert dict(ProfileForm().fields["language"].choices) == {"en": "English", "es": "español"}


def test_time_zones_are_offered_by_place_without_the_old_names(logged_in, customer):
    """About 600 raw names, "Africa/Asmera" and "GB" among them, to scroll on a phone."""
    page = logged_in.get(reverse("accounts:profile") + "?edit=preferences").content.decode()
    assert '<optgroup label="Europe">' in page
    assert '<option value="Europe/Madrid">Madrid</option>' in page
    assert 'value="Africa/Asmera"' not in page and '<option value="GB"' not in page


def test_time_zone_regions_are_in_the_readers_language(logged_in, customer):
    customer.profile.language = "es"
    customer.profile.save()
    page = logged_in.get(reverse("accounts:profile") + "?edit=preferences").content.decode()
    assert '<optgroup label="Europa">' in page
    assert '<optgroup label="Océano Atlántico">' in page
    assert '<optgroup label="Atlantic">' not in page
    assert '<option value="Atlantic/Canary">Canary</option>' in page
    # In the reader's alphabetical order, accents aside: the oceans among the O's.
    import re

    assert re.findall(r'<optgroup label="([^"]+)"', page) == [
        "África",
        "América",
        "Antártida",
        "Ártico",
        "Asia",
        "Australia",
        "Europa",
        "Océano Atlántico",
        "Océano Índico",
        "Océano Pacífico",
    ]


def test_an_old_zone_name_is_kept_offered_and_still_taken(logged_in, customer):
    customer.profile.time_zone = "GB"  # stored before the list was cut
    customer.profile.save()
    page = logged_in.get(reverse("accounts:profile") + "?edit=preferences").content.decode()
    assert '<option value="GB" selected>GB</option>' in page
    response = logged_in.post(
        section_url("preferences"),
        {"preferences-language": "en", "preferences-time_zone": "US/Eastern"},
    )
    assert response.status_code == 302
    customer.profile.refresh_from_db()
    assert customer.profile.time_zone == "US/Eastern"


def test_the_customer_chooses_what_may_reach_them_during_quiet_hours(logged_in, customer):
    """The docs offered it; no form did (a user's review)."""
    page = logged_in.get(reverse("accounts:profile") + "?edit=notifications").content.decode()
    assert "Allowed during quiet hours" in page
    assert 'value="journey_delayed"' in page and 'value="milestone_reached"' not in page
    response = logged_in.post(
        section_url("notifications"),
        {
            "notifications-channel_email": "on",
            "notifications-quiet_hours_start": "22:00",
            "notifications-quiet_hours_end": "07:00",
            "notifications-anytime_kinds": ["staff_reply", "journey_delayed"],
        },
    )
    assert response.status_code == 302
    customer.profile.refresh_from_db()
    assert customer.profile.anytime_kinds == ["journey_delayed", "staff_reply"]
    change = ProfileChange.objects.get(field="anytime_kinds")
    assert change.shown_new_value == "Your journey is late, with the new date, " + (
        "A message from us, or our answer to yours"
    )
    shown = logged_in.get(reverse("accounts:profile")).content.decode()
    assert "Your journey is late, with the new date, A message from us" in shown
    refused = logged_in.post(
        section_url("notifications"),
        {"notifications-channel_email": "on", "notifications-anytime_kinds": ["milestone_reached"]},
    )
    assert refused.status_code in (200, 400, 422)
    customer.profile.refresh_from_db()
    assert customer.profile.anytime_kinds == ["journey_delayed", "staff_reply"]
