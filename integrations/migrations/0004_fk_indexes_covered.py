"""Foreign keys whose own index another index already covers (it starts with the same
column): the index is dropped, one less to write for every row inserted, and for every
row updated off its page. Only the index: Django's AlterField would also drop and add
the foreign key again, checking every row of tables of a million rows under lock (and
rebuild each table on SQLite), for a constraint that does not change.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_idempotency_lease"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "integrations_idempotencyrecord_partner_id_559f0dba";',
                    'CREATE INDEX "integrations_idempotencyrecord_partner_id_559f0dba" ON "integrations_idempotencyrecord" ("partner_id");',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "integrations_inboundevent_partner_id_f87632ce";',
                    'CREATE INDEX "integrations_inboundevent_partner_id_f87632ce" ON "integrations_inboundevent" ("partner_id");',
                ),
            ],
        ),
    ]
