"""Foreign-key indexes another index covers, dropped (see journey.migration_ops)."""

import django.db.models.deletion
from django.db import migrations, models

from journey.migration_ops import drop_covered_indexes


class Migration(migrations.Migration):
    atomic = False  # the indexes go CONCURRENTLY on PostgreSQL

    dependencies = [
        ("journey", "0010_journey_version_by_index"),
    ]

    operations = [
        drop_covered_indexes(
            [
                ("journey_etaestimate", "journey_id", "journey_etaestimate_journey_id_3fa265bd"),
                ("journey_journeyevent", "journey_id", "journey_journeyevent_journey_id_03a2cf41"),
                ("journey_milestone", "journey_id", "journey_milestone_journey_id_81c6f1de"),
            ],
            [
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
        ),
    ]
