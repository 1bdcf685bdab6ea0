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
        ("journey", "0010_journey_version_by_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="etaestimate",
                    name="journey",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="eta_estimates",
                        to="journey.journey",
                    ),
                ),
                migrations.AlterField(
                    model_name="journeyevent",
                    name="journey",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="journey.journey",
                    ),
                ),
                migrations.AlterField(
                    model_name="milestone",
                    name="journey",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="milestones",
                        to="journey.journey",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "journey_etaestimate_journey_id_3fa265bd";',
                    'CREATE INDEX "journey_etaestimate_journey_id_3fa265bd" ON "journey_etaestimate" ("journey_id");',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "journey_journeyevent_journey_id_03a2cf41";',
                    'CREATE INDEX "journey_journeyevent_journey_id_03a2cf41" ON "journey_journeyevent" ("journey_id");',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "journey_milestone_journey_id_81c6f1de";',
                    'CREATE INDEX "journey_milestone_journey_id_81c6f1de" ON "journey_milestone" ("journey_id");',
                ),
            ],
        ),
    ]
