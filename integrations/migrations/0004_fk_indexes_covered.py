"""Foreign-key indexes another index covers, dropped (see journey.migration_ops)."""

import django.db.models.deletion
from django.db import migrations, models

from journey.migration_ops import drop_covered_indexes


class Migration(migrations.Migration):
    atomic = False  # the indexes go CONCURRENTLY on PostgreSQL

    dependencies = [
        ("integrations", "0003_idempotency_lease"),
    ]

    operations = [
        drop_covered_indexes(
            [
                ("integrations_idempotencyrecord", "partner_id", "integrations_idempotencyrecord_partner_id_559f0dba"),
                ("integrations_inboundevent", "partner_id", "integrations_inboundevent_partner_id_f87632ce"),
            ],
            [
                migrations.AlterField(
                    model_name="idempotencyrecord",
                    name="partner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="integrations.partner",
                    ),
                ),
                migrations.AlterField(
                    model_name="inboundevent",
                    name="partner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="integrations.partner",
                    ),
                ),
            ],
        ),
    ]
