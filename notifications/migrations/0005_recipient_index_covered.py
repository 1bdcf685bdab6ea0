"""Foreign keys whose own index another index already covers (it starts with the same
column): the index is dropped, one less to write for every row inserted, and for every
row updated off its page. Only the index: Django's AlterField would also drop and add
the foreign key again, checking every row of tables of a million rows under lock (and
rebuild each table on SQLite), for a constraint that does not change.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0004_claim_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "notifications_notification_recipient_id_d055f3f0";',
                    'CREATE INDEX "notifications_notification_recipient_id_d055f3f0" ON "notifications_notification" ("recipient_id");',
                ),
            ],
        ),
    ]
