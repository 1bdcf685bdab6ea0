"""The expected date a delayed journey's customer was last told (journey.eta: a slip a
week further is told again). Nullable without a default: SQLite adds the column in
place, keeping the journey version's triggers (journey_journey's own among them)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('journey', '0018_eta_cause_booking'),
    ]

    operations = [
        migrations.AddField(
            model_name='journey',
            name='delay_told_eta',
            field=models.DateField(blank=True, editable=False, null=True),
        ),
    ]
