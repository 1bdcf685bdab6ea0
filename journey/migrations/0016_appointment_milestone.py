"""The stage an appointment is for (a handover, an installation). SQLite adds this
column in place today; were it to make the table again (as for 0015's column with a
default), the journey version's triggers would be lost, its own and the reschedule
requests' (which read it to find their journey): they are made again either way."""

import django.db.models.deletion
from django.db import migrations, models

from journey.migration_ops import keep_version_triggers


class Migration(migrations.Migration):

    dependencies = [
        ('journey', '0015_appointment_visit'),
    ]

    operations = keep_version_triggers(
        migrations.AddField(
            model_name='appointment',
            name='milestone',
            field=models.ForeignKey(blank=True, help_text='The stage this appointment is for (a handover, an installation): the customer then sees that stage booked for its day, not an expected date.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='appointments', to='journey.milestone', verbose_name='for the stage'),
        ),
        "journey_appointment",
        "journey_reschedulerequest",
    )
