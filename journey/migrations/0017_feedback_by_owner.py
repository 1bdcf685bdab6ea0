"""Whose a rating is, kept as it was given (the dashboard ranks stages by the owners'):
read off each journey's owner before, so a journey given another owner made the earlier
owner's ratings count as a viewer's. The ratings given so far are taken as their
journey's owner has them now, the best the data holds. SQLite makes the table again to
add a column with a default: the journey version's triggers on it are made again."""

from django.db import migrations, models
from django.db.models import F

from journey.migration_ops import keep_version_triggers


def by_the_owner_now(apps, schema_editor) -> None:
    Feedback = apps.get_model("journey", "Feedback")
    Feedback.objects.filter(customer=F("milestone__journey__owner")).update(by_owner=True)


class Migration(migrations.Migration):
    dependencies = [
        ("journey", "0016_appointment_milestone"),
    ]

    operations = [
        *keep_version_triggers(
            migrations.AddField(
                model_name="feedback",
                name="by_owner",
                field=models.BooleanField(
                    default=False,
                    help_text="Given by the journey's owner, not a viewer.",
                    verbose_name="owner",
                ),
            ),
            "journey_feedback",
        ),
        migrations.RunPython(by_the_owner_now, migrations.RunPython.noop, elidable=False),
    ]
