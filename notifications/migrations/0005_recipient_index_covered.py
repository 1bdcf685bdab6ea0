"""Foreign-key indexes another index covers, dropped (see journey.migration_ops)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from journey.migration_ops import drop_covered_indexes


class Migration(migrations.Migration):
    atomic = False  # the indexes go CONCURRENTLY on PostgreSQL

    dependencies = [
        ("notifications", "0004_claim_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_covered_indexes(
            [
                ("notifications_notification", "recipient_id", "notifications_notification_recipient_id_d055f3f0"),
            ],
            [
                migrations.AlterField(
                    model_name="notification",
                    name="recipient",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notifications",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
    ]
