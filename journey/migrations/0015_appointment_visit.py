"""Whether an appointment is a visit we make to the customer. On SQLite the column is
added by making the table again, which loses the journey version's triggers, its own and
the reschedule requests' (which read it to find their journey): they are made again."""

from django.db import migrations, models

from journey.migration_ops import keep_version_triggers


class Migration(migrations.Migration):

    dependencies = [
        ('journey', '0014_stage_translations'),
    ]

    operations = keep_version_triggers(
        migrations.AddField(
            model_name='appointment',
            name='visit',
            field=models.BooleanField(default=False, help_text='A visit (an engineer, a delivery): the customer is told when we will be with them, and what to have ready, not when to arrive and what to bring.', verbose_name='we come to the customer'),
        ),
        "journey_appointment",
        "journey_reschedulerequest",
    )
