"""A stage's words in the site's other languages. On SQLite the column is added by making
the table again, which loses the journey version's triggers: they are made again."""

import journey.models
from django.db import migrations, models

from journey.migration_ops import keep_version_triggers


class Migration(migrations.Migration):

    dependencies = [
        ('journey', '0013_appointment_arrive_at_blank'),
    ]

    operations = keep_version_triggers(
        migrations.AddField(
            model_name='stagedefinition',
            name='translations',
            field=models.JSONField(blank=True, default=dict, validators=[journey.models.validate_stage_translations], verbose_name='translations'),
        ),
        "journey_stagedefinition",
    )
