"""Stages in the customer's language: their pages and their emails (the admin that
edits them: tests/journey/test_admin.py)."""

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import formats, timezone, translation

from journey.models import EventSource, StageDefinition, validate_stage_translations
from journey.services import journey_record_milestone
from tests.factories import PASSWORD, make_journey

pytestmark = pytest.mark.django_db

PAINT = {"es": {"label": "Pintura", "explanation": "Cinco capas de pintura."}}


def spanish_stage(journey, key: str = "stage-2", **words: str) -> StageDefinition:
    stage = journey.template.stages.get(key=key)
    stage.label, stage.explanation = "Paint", "Five coats of paint."
    stage.translations = {"es": words} if words else PAINT
    stage.save()
    return stage


def test_a_stage_shows_its_words_in_the_active_language_else_the_default():
    journey = make_journey()
    stage = spanish_stage(journey, label="Pintura")  # no Spanish explanation
    with translation.override("es"):
        assert (stage.shown_label, stage.shown_explanation) == ("Pintura", "Five coats of paint.")
    with translation.override("en"):
        assert (stage.shown_label, stage.shown_explanation) == ("Paint", "Five coats of paint.")


@pytest.mark.parametrize(
    "value",
    [
        {"fr": {"label": "Peinture"}},  # not one of the site's languages
        {"en": {"label": "Paint"}},  # the default is the stage's own label
        {"es": {"name": "Pintura"}},
        {"es": {"label": 3}},
        {"es": {"label": "x" * 81}},
        ["es"],
    ],
)
def test_translations_of_another_shape_are_refused(value):
    with pytest.raises(ValidationError):
        validate_stage_translations(value)


def test_a_spanish_customer_reads_the_stages_in_spanish(client, customer):
    journey = make_journey(owner=customer)
    spanish_stage(journey)
    journey_record_milestone(
        journey=journey, stage_key="stage-2", occurred_at=timezone.now(), source=EventSource.STAFF
    )
    client.login(email=customer.email, password=PASSWORD)
    url = reverse("journey:detail", kwargs={"reference": journey.reference})

    english = client.get(url).content.decode()
    assert "Paint" in english and "Five coats of paint." in english
    assert "Pintura" not in english

    customer.profile.language = "es"
    customer.profile.save()
    spanish = client.get(url).content.decode()
    assert "Pintura" in spanish and "Cinco capas de pintura." in spanish
    assert ">Paint<" not in spanish and "Five coats" not in spanish


@pytest.mark.parametrize(
    ("language", "words", "absent"),
    [
        ("es", ("Pintura", "Cinco capas de pintura."), "Paint"),
        ("en", ("Paint", "Five coats"), "Pintura"),
    ],
)
def test_the_stage_email_is_in_the_recipients_language(
    customer, django_capture_on_commit_callbacks, language, words, absent
):
    """The stage's words are kept with the message in every language, and chosen when it
    is rendered: a partner's event, in English, still tells a Spanish customer in Spanish."""
    customer.profile.language = language
    customer.profile.save()
    journey = make_journey(owner=customer)
    spanish_stage(journey)
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        journey_record_milestone(
            journey=journey,
            stage_key="stage-2",
            occurred_at=timezone.now(),
            source=EventSource.PARTNER,
        )
    (email,) = [m for m in mail.outbox if words[0] in m.subject]
    html = email.alternatives[0][0]
    for text in (email.body, html):
        assert all(word in text for word in words), text
        assert absent not in text
    # The message is marked in its language, and its dates read as that language writes
    # them ("sábado 5 de diciembre, 10:00").
    assert f'<html lang="{language}">' in html
    with translation.override(language), timezone.override(customer.profile.zone):
        month = formats.date_format(timezone.localtime(), "F")
    assert (f" de {month}, " if language == "es" else f" {month}, ") in email.body
